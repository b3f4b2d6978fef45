//! Image codecs at the bottom of the host: decoding with limits (a
//! decompression bomb fails instead of eating memory), PNG encoding and
//! JPEG thumbnails; and the one gate every decode of untrusted bytes
//! passes (`gate`). Everything above uses these; nothing here knows jobs,
//! plugins or HTTP.

pub mod gate;

pub use gate::{DecodeGate, Encoded};

use std::io::Cursor;

use image::{DynamicImage, ImageFormat, ImageReader, Limits, RgbaImage};

/// Largest side a decoded image may have.
pub const MAX_DECODED_SIDE: u32 = 8192;
/// Most bytes the decoder may allocate for one image.
pub const MAX_DECODE_ALLOC: u64 = 512 << 20;
/// Longest side of a thumbnail.
pub const THUMBNAIL_SIZE: u32 = 256;

/// Decoder limits for an image of at most `width` x `height`: the
/// decoder refuses a larger one before allocating, and may allocate the
/// pixels at 16 bits a channel plus room for its own buffers, never more.
fn limits(width: u32, height: u32) -> Limits {
    let (width, height) = (width.min(MAX_DECODED_SIDE), height.min(MAX_DECODED_SIDE));
    let pixels = u64::from(width) * u64::from(height);
    let mut limits = Limits::default();
    limits.max_image_width = Some(width);
    limits.max_image_height = Some(height);
    limits.max_alloc = Some((pixels * 8 + (16 << 20)).min(MAX_DECODE_ALLOC));
    limits
}

fn decode_with(
    reader: ImageReader<Cursor<&[u8]>>,
    (width, height): (u32, u32),
) -> Result<DynamicImage, String> {
    let mut reader = reader;
    reader.limits(limits(width, height));
    reader.decode().map_err(|e| e.to_string())
}

fn guessed(bytes: &[u8]) -> Result<ImageReader<Cursor<&[u8]>>, String> {
    ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| e.to_string())
}

/// Decodes an image (PNG, JPEG or WebP, by its bytes) into RGBA.
pub fn decode(bytes: &[u8]) -> Result<RgbaImage, String> {
    Ok(decode_with(guessed(bytes)?, (MAX_DECODED_SIDE, MAX_DECODED_SIDE))?.to_rgba8())
}

/// Decodes an image whose header said `width` x `height`: the decoder may
/// allocate only what an image of that size needs, and pixels that do not
/// match the header are refused.
pub fn decode_sized(bytes: &[u8], width: u32, height: u32) -> Result<DynamicImage, String> {
    let decoded = decode_with(guessed(bytes)?, (width, height))?;
    if (decoded.width(), decoded.height()) != (width, height) {
        return Err("its pixels do not match its header".into());
    }
    Ok(decoded)
}

/// Width and height from the image's header, without decoding pixels.
pub fn dimensions(bytes: &[u8]) -> Result<(u32, u32), String> {
    guessed(bytes)?.into_dimensions().map_err(|e| e.to_string())
}

/// Decodes bytes that must be a PNG.
pub fn decode_png(bytes: &[u8]) -> Result<DynamicImage, String> {
    decode_with(
        ImageReader::with_format(Cursor::new(bytes), ImageFormat::Png),
        (MAX_DECODED_SIDE, MAX_DECODED_SIDE),
    )
    .map_err(|e| format!("not a PNG image: {e}"))
}

pub fn encode_png(img: &RgbaImage) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    img.write_to(&mut Cursor::new(&mut out), ImageFormat::Png)
        .map_err(|e| e.to_string())?;
    Ok(out)
}

/// A decoded image as PNG, in its own colour type where PNG has it (no
/// RGBA copy of a grey or RGB image), else as RGBA.
pub fn encode_png_of(img: &DynamicImage) -> Result<Vec<u8>, String> {
    use image::ColorType as C;
    match img.color() {
        C::L8 | C::La8 | C::Rgb8 | C::Rgba8 | C::L16 | C::La16 | C::Rgb16 | C::Rgba16 => {
            let mut out = Vec::new();
            img.write_to(&mut Cursor::new(&mut out), ImageFormat::Png)
                .map_err(|e| e.to_string())?;
            Ok(out)
        }
        _ => encode_png(&img.to_rgba8()),
    }
}

/// A JPEG of at most `THUMBNAIL_SIZE` on its longer side.
pub fn thumbnail_jpeg(img: &DynamicImage) -> Result<Vec<u8>, String> {
    let thumb = img.thumbnail(THUMBNAIL_SIZE, THUMBNAIL_SIZE).to_rgb8();
    let mut out = Vec::new();
    thumb
        .write_to(&mut Cursor::new(&mut out), ImageFormat::Jpeg)
        .map_err(|e| format!("encoding thumbnail: {e}"))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_thumbnail() {
        let img = RgbaImage::from_pixel(600, 300, image::Rgba([10, 20, 30, 255]));
        let png = encode_png(&img).unwrap();
        assert_eq!(decode(&png).unwrap(), img);
        let thumb = thumbnail_jpeg(&decode_png(&png).unwrap()).unwrap();
        let t = decode(&thumb).unwrap();
        assert_eq!(t.dimensions(), (THUMBNAIL_SIZE, THUMBNAIL_SIZE / 2));
    }

    #[test]
    fn oversized_and_foreign_bytes_are_refused() {
        // A PNG header claiming 100000 x 1 pixels.
        let img = RgbaImage::new(MAX_DECODED_SIDE + 1, 1);
        let png = encode_png(&img).unwrap();
        assert!(decode(&png).is_err());
        assert!(decode(b"not an image").is_err());
        assert_eq!(dimensions(&png).unwrap(), (MAX_DECODED_SIDE + 1, 1));
        assert!(dimensions(b"not an image").is_err());
        let jpeg = thumbnail_jpeg(&DynamicImage::new_rgb8(8, 8)).unwrap();
        assert!(decode_png(&jpeg).is_err());
    }
}
