"""Training the beat model: composed music, rendered with exact beats, and the trainer."""
