"""NNI Lightning evaluators for tasks NNI does not ship (inpainting: MSE loss, PSNR and SSIM)."""
from .inpainting import Inpainting, InpaintingModule

__all__ = ['Inpainting', 'InpaintingModule']
