"""The co-writing app (Textual): ``storytui [FILE]`` runs ``storytui.tui.app.run_app``."""
