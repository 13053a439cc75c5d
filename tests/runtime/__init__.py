"""Runtime tests: machina run as a subprocess against host-shaped trees it may write to."""
