"""Evaluation of generated audio (e.g. `key`: does a piano continuation stay in the prompt's
key). No TensorFlow here."""
