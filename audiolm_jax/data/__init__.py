"""The data pipeline: audio -> token cache -> seqio Tasks, one per stage."""
