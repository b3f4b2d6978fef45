//! PNG chunks, by hand (the `image` encoder writes none of these): a
//! worker's PNG is cut down to the chunks that describe pixels, so nothing
//! it (or a plugin) embedded — text, XMP, a manifest of its own — survives
//! into the stored file; then the studio's XMP and text chunks go in.

/// The 8-byte PNG signature.
const SIGNATURE: &[u8; 8] = b"\x89PNG\r\n\x1a\n";

/// Chunks kept from a worker's PNG: the critical ones and the ancillary
/// ones that change how pixels look.
const KEPT: [&[u8; 4]; 12] = [
    b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"gAMA", b"cHRM", b"sRGB", b"iCCP", b"sBIT",
    b"pHYs", b"bKGD",
];

/// A chunk: its type and data.
pub type Chunk<'a> = ([u8; 4], &'a [u8]);
/// A chunk to write: its type and data.
pub type OwnedChunk = ([u8; 4], Vec<u8>);

/// The chunks of a PNG.
fn chunks(png: &[u8]) -> Result<Vec<Chunk<'_>>, String> {
    let body = png
        .strip_prefix(SIGNATURE.as_slice())
        .ok_or("not a PNG (signature)")?;
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < body.len() {
        let head = body.get(at..at + 8).ok_or("a truncated chunk header")?;
        let len = u32::from_be_bytes(head[..4].try_into().expect("4 bytes")) as usize;
        let kind: [u8; 4] = head[4..8].try_into().expect("4 bytes");
        let data = body
            .get(at + 8..at + 8 + len)
            .ok_or("a chunk longer than the file")?;
        body.get(at + 8 + len..at + 12 + len)
            .ok_or("a chunk without its CRC")?;
        out.push((kind, data));
        at += 12 + len;
        if &kind == b"IEND" {
            break;
        }
    }
    if out.first().map(|c| &c.0) != Some(b"IHDR") || out.last().map(|c| &c.0) != Some(b"IEND") {
        return Err("a PNG must start with IHDR and end with IEND".into());
    }
    Ok(out)
}

fn write_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let mut crc = crc32fast::Hasher::new();
    crc.update(kind);
    crc.update(data);
    out.extend_from_slice(&crc.finalize().to_be_bytes());
}

/// An `iTXt` chunk's data: uncompressed UTF-8 `text` under `keyword`.
pub fn itxt(keyword: &str, text: &str) -> Vec<u8> {
    let mut data = Vec::with_capacity(keyword.len() + text.len() + 5);
    data.extend_from_slice(keyword.as_bytes());
    // Null separator, compression flag 0, method 0, empty language tag,
    // empty translated keyword.
    data.extend_from_slice(&[0, 0, 0, 0, 0]);
    data.extend_from_slice(text.as_bytes());
    data
}

/// The PNG with only the `KEPT` chunks of `png`, and `extra` chunks right
/// after its header.
pub fn rewrite(png: &[u8], extra: &[OwnedChunk]) -> Result<Vec<u8>, String> {
    let chunks = chunks(png)?;
    let mut out =
        Vec::with_capacity(png.len() + extra.iter().map(|c| c.1.len() + 12).sum::<usize>());
    out.extend_from_slice(SIGNATURE);
    for (i, (kind, data)) in chunks.iter().enumerate() {
        if !KEPT.contains(&kind) {
            continue;
        }
        write_chunk(&mut out, kind, data);
        if i == 0 {
            for (k, d) in extra {
                write_chunk(&mut out, k, d);
            }
        }
    }
    Ok(out)
}

/// The chunks `rewrite` would drop (for tests that move credentials
/// between files).
#[cfg(test)]
pub fn ancillary(png: &[u8]) -> Result<Vec<OwnedChunk>, String> {
    Ok(chunks(png)?
        .into_iter()
        .filter(|(k, _)| !KEPT.contains(&k))
        .map(|(k, d)| (k, d.to_vec()))
        .collect())
}

/// The text of the `iTXt` chunk with `keyword`, if any.
pub fn find_itxt(png: &[u8], keyword: &str) -> Option<String> {
    chunks(png).ok()?.into_iter().find_map(|(kind, data)| {
        let rest = data.strip_prefix(keyword.as_bytes())?;
        if &kind != b"iTXt" || rest.first() != Some(&0) {
            return None;
        }
        // keyword\0 flag method lang\0 translated\0 text
        let rest = rest.get(3..)?;
        let lang_end = rest.iter().position(|b| *b == 0)?;
        let rest = &rest[lang_end + 1..];
        let tr_end = rest.iter().position(|b| *b == 0)?;
        String::from_utf8(rest[tr_end + 1..].to_vec()).ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png() -> Vec<u8> {
        let img = image::RgbaImage::from_pixel(4, 3, image::Rgba([1, 2, 3, 255]));
        crate::imaging::encode_png(&img).unwrap()
    }

    #[test]
    fn foreign_chunks_go_and_ours_come_in_and_pixels_stay() {
        let mut dirty = png();
        // A worker's own text chunk, spliced in before IEND.
        let iend = dirty.len() - 12;
        let mut tail = dirty.split_off(iend);
        write_chunk(&mut dirty, b"tEXt", b"parameters\0fake");
        write_chunk(&mut dirty, b"caBX", b"not a manifest");
        dirty.append(&mut tail);

        let clean = rewrite(&dirty, &[(*b"iTXt", itxt("parameters", "안녕 seed 7"))]).unwrap();
        let kinds: Vec<_> = chunks(&clean).unwrap().iter().map(|c| c.0).collect();
        assert!(!kinds.contains(b"tEXt") && !kinds.contains(b"caBX"));
        assert_eq!(kinds[1], *b"iTXt");
        assert_eq!(
            find_itxt(&clean, "parameters").as_deref(),
            Some("안녕 seed 7")
        );
        let a = crate::imaging::decode(&dirty).unwrap();
        let b = crate::imaging::decode(&clean).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn broken_files_are_refused() {
        let good = png();
        assert!(rewrite(b"GIF89a", &[]).is_err());
        assert!(rewrite(&good[..good.len() - 5], &[]).is_err());
        let mut long = good.clone();
        long[8..12].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(rewrite(&long, &[]).is_err());
    }
}
