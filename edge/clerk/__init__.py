"""The clerk terminal (`tenpo clerk`, a Textual app) and clerk accounts — issue 7."""
