"""How good the beats are: annotated datasets scored with mir_eval against the
analyzer, the C tracker or a baseline (``evaluate``), and a generated song whose
beats are known (``demo_audio``, for the demo, tests and benches)."""
