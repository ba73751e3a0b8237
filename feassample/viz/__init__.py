"""Pictures: figures outside pyplot (``figure``), a run's samples (``samples``), contrastive
explanations (``contrastive``), the rarity curve and facets (``analysis``), the report pages
(``report``)."""
from .analysis import plot_facets, plot_rarity, rarity_axes
from .figure import new_figure, save_figure
from .report import run_report, sweep_report
from .samples import (draw_images, image_grid, is_image, pick_spread, plot_2d, plot_run,
                      plot_t_histogram, plot_values, run_title, sample_rows, sample_rows_figure,
                      save_vae_picture)

__all__ = ["plot_facets", "plot_rarity", "rarity_axes", "run_report", "sweep_report", "new_figure", "save_figure", "draw_images", "image_grid", "is_image", "pick_spread",
           "plot_2d", "plot_run", "plot_t_histogram", "plot_values", "run_title", "sample_rows",
           "sample_rows_figure",
           "save_vae_picture"]
