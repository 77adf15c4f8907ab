"""Named configs: `python launch.py --config=NAME` loads `configs/NAME.py:get_config()`."""
