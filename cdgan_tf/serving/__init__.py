"""Serving: the defended and purifier SavedModels with images and bytes signatures."""
