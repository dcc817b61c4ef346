"""glue7: seven tasks with GLUE's forms and label semantics, written by rules over one shared world of events."""
