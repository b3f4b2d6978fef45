//! The pixel work of the grayscale node, kept free of bindings so the
//! host's benchmark compiles the very same code natively.

/// Replaces each RGBA8 pixel's colour by its BT.601 luma, keeping alpha.
pub fn grayscale_rgba(pixels: &mut [u8]) {
    for px in pixels.chunks_exact_mut(4) {
        // Fixed-point 0.299 R + 0.587 G + 0.114 B, rounded.
        let y = (77 * u32::from(px[0]) + 150 * u32::from(px[1]) + 29 * u32::from(px[2]) + 128) >> 8;
        let y = y as u8;
        px[0] = y;
        px[1] = y;
        px[2] = y;
    }
}
