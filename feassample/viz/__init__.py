"""Pictures: figures outside pyplot (``figure``), a run's samples (``samples``), contrastive
explanations (``contrastive``)."""
from .figure import new_figure, save_figure
from .samples import (draw_images, image_grid, is_image, pick_spread, plot_2d, plot_run,
                      plot_t_histogram, plot_values, run_title, sample_rows, sample_rows_figure,
                      save_vae_picture)

__all__ = ["new_figure", "save_figure", "draw_images", "image_grid", "is_image", "pick_spread",
           "plot_2d", "plot_run", "plot_t_histogram", "plot_values", "run_title", "sample_rows",
           "sample_rows_figure",
           "save_vae_picture"]
