"""The suite's root: pytest puts this folder on ``sys.path`` (rootdir conftest, prepend mode), so
tests in every subfolder import the shared helpers (``model_helpers``, ``trust_fakes``,
``liar``) by name."""
