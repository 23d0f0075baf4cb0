"""Model plugins that ship with p2pai, registered like any other (entry points ``p2pai.models``)."""
