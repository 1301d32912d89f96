"""DJ software grids in and out: rekordbox (XML, ANLZ), Traktor (NML), Serato (tags).

Each reader turns its format into a :class:`~gridcast.host.djgrids.grid.DjTrack`;
``importing`` makes a beat-map version of one, ``collection`` imports a whole library,
``rekordbox_export`` writes maps back as rekordbox XML. See docs/dj_grids.md.
"""
