"""`livelambda cloud`: AppSync Events and Lambda emulators on loopback."""
