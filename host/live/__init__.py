"""Beats as they happen: the C tracker (gridcast.native) fed hop by hop from a file
(as if live) or an audio input, and how fast it locks (``realtime``)."""
