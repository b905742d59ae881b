"""The measure layer: run the app at small scales, sample it, and fit its scaling model."""
