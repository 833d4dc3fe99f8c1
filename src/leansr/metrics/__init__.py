"""Image-quality metrics (PSNR, SSIM on Y or RGB) and benchmark evaluation of models (`metrics.evaluate`)."""

from leansr.metrics.psnr_ssim import Y_CONVENTIONS, YConvention, psnr, rgb_to_y, ssim

__all__ = ["Y_CONVENTIONS", "YConvention", "psnr", "rgb_to_y", "ssim"]
