import matplotlib

matplotlib.use("Agg")  # unit tests draw figures off screen (the notebooks use their own)
