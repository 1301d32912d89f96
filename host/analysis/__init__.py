"""The offline analyzer: audio file -> beat map.

``analyzer.analyze`` runs the pipeline: ``audio`` (checked decoding), ``features``
(one pass at 100 frames/s), ``beat_network`` (with its weights in ``models/``) and
``onset`` (evidence), ``beat_hmm`` and ``beats`` (the beat Viterbi), ``downbeats``
(the bar Viterbi), ``envelopes`` (bass/mid/high at 50 Hz). ``params`` holds every
tunable number; docs/analysis.md describes each stage with its figures.
"""
