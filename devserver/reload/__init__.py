"""Hot reload: code generations of each function's workers, and the watcher that says when."""
