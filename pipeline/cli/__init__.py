"""The command line on top of everything: one command per MLproject entry point."""
