"""The one exception type for bad user input (files, shapes, configs).

Scripts catch it and print a single line naming the file and the problem
(see ``engine.cli.run_main``); everything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """Bad input that the user can fix: the message names the file and the problem."""
