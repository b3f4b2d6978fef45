//! Every fuzz target's seeds and recorded crashes, replayed on stable
//! through the same bodies the fuzzer runs (`pingvas_fuzz::<target>`):
//!
//!   cargo test --manifest-path fuzz/Cargo.toml --no-default-features
//!
//! Inputs: `fuzz/corpus/<target>/*` (the seeds; a minimised corpus if one
//! is committed), `fuzz/regressions/<target>/*` (every crash a fuzzer
//! found, kept once fixed), and for some targets the public examples in
//! `../shared/fixtures` when that checkout is there. The webhook targets
//! need the billing adapters built for wasm32-wasip2: without them they
//! are skipped with a note, unless `PINGVAS_PLUGIN_DIR` is set (then a
//! missing adapter fails).
//!
//! `write_generated_seeds` (ignored) writes the seeds that need an image
//! encoder or the signer: JPEG, WebP, 16-bit PNG, a signed PNG.

use std::path::{Path, PathBuf};

/// `fuzz/`: the cargo-fuzz crate, its corpus and regressions.
fn fuzz_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Files to replay: notes (`README*`) and hidden files left out.
fn inputs(target: &str) -> Vec<PathBuf> {
    let fuzz = fuzz_dir();
    let mut dirs = vec![
        fuzz.join("corpus").join(target),
        fuzz.join("regressions").join(target),
    ];
    dirs.extend(pingvas_fuzz::shared_seed_dirs(target));
    let mut files = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_file() && !name.starts_with('.') && !name.starts_with("README") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn replay(target: &str) {
    let run = pingvas_fuzz::target(target).expect("a fuzz target of that name");
    let files = inputs(target);
    assert!(
        !files.is_empty(),
        "no inputs for {target} in fuzz/corpus/{target}"
    );
    let mut failed = Vec::new();
    for file in &files {
        let data = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        if std::panic::catch_unwind(|| run(&data)).is_err() {
            failed.push(file.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "{target} fails on {} of {} inputs:\n{}",
        failed.len(),
        files.len(),
        failed.join("\n")
    );
}

/// The webhook targets run when the adapter is built; they must when
/// `PINGVAS_PLUGIN_DIR` names where it is built.
fn adapter_built(provider: pingvas_fuzz::Provider) -> bool {
    if pingvas_fuzz::adapter_wasm(provider).is_some() {
        return true;
    }
    assert!(
        std::env::var_os("PINGVAS_PLUGIN_DIR").is_none(),
        "PINGVAS_PLUGIN_DIR is set but has no {}",
        provider.wasm_file()
    );
    eprintln!(
        "skipped: {} is not built (cargo build --manifest-path plugins/Cargo.toml --target wasm32-wasip2 --release)",
        provider.wasm_file()
    );
    false
}

#[test]
fn webhook_lemonsqueezy() {
    if adapter_built(pingvas_fuzz::Provider::LemonSqueezy) {
        replay("webhook_lemonsqueezy");
    }
}

#[test]
fn webhook_stripe() {
    if adapter_built(pingvas_fuzz::Provider::Stripe) {
        replay("webhook_stripe");
    }
}

#[test]
fn graph_definition() {
    replay("graph_definition");
}

#[test]
fn invokeai_import() {
    replay("invokeai_import");
}

#[test]
fn generation_request() {
    replay("generation_request");
}

#[test]
fn png_chunks() {
    replay("png_chunks");
}

#[test]
fn multipart_upload() {
    replay("multipart_upload");
}

#[test]
fn every_target_is_replayed_and_has_a_binary() {
    let here = fuzz_dir();
    for (name, _) in pingvas_fuzz::TARGETS {
        assert!(
            here.join("fuzz_targets")
                .join(format!("{name}.rs"))
                .is_file(),
            "fuzz_targets/{name}.rs"
        );
        assert!(here.join("corpus").join(name).is_dir(), "corpus/{name}");
    }
}

// ---------------------------------------------------------------------------
// Seeds that need an encoder or the signer, written by hand:
//   cargo test --manifest-path fuzz/Cargo.toml --no-default-features \
//     --test replay -- --ignored write_generated_seeds

fn encode(img: image::DynamicImage, format: image::ImageFormat) -> Vec<u8> {
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), format)
        .expect("encoding a seed");
    out
}

fn multipart(boundary: &str, filename: &str, content_type: &str, bytes: &[u8]) -> Vec<u8> {
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\nContent-Type: {content_type}\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    body
}

fn write(path: &Path, bytes: &[u8]) {
    assert!(
        bytes.len() < 64 << 10,
        "{}: a seed under 64 KiB",
        path.display()
    );
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    println!("wrote {} ({} bytes)", path.display(), bytes.len());
}

#[test]
#[ignore = "writes seed files into fuzz/corpus; run by hand"]
fn write_generated_seeds() {
    use base64::Engine;
    use image::{DynamicImage, ImageBuffer, ImageFormat, Luma, Rgb, RgbImage};

    let corpus = fuzz_dir().join("corpus");
    let rgb = DynamicImage::ImageRgb8(RgbImage::from_fn(64, 48, |x, y| {
        Rgb([(x * 4) as u8, (y * 5) as u8, 90])
    }));
    let grey16 = DynamicImage::ImageLuma16(ImageBuffer::<Luma<u16>, Vec<u16>>::from_fn(
        16,
        16,
        |x, y| Luma([(x * 4096 + y * 17) as u16]),
    ));
    let jpeg = encode(rgb.clone(), ImageFormat::Jpeg);
    let webp = encode(rgb.clone(), ImageFormat::WebP);
    let png16 = encode(grey16, ImageFormat::Png);
    let png = encode(rgb, ImageFormat::Png);
    let signed = pingvas_fuzz::signed_png(&png).expect("signing a seed");

    let pngs = corpus.join("png_chunks");
    write(&pngs.join("gen-signed.png"), &signed);
    write(&pngs.join("gen-grey16.png"), &png16);
    write(&pngs.join("gen-rgb.jpg"), &jpeg);
    write(&pngs.join("gen-rgb.webp"), &webp);

    let uploads = corpus.join("multipart_upload");
    write(
        &uploads.join("gen-jpeg.multipart"),
        &multipart("X", "photo.jpg", "image/jpeg", &jpeg),
    );
    write(
        &uploads.join("gen-webp.multipart"),
        &multipart("X", "photo.webp", "image/webp", &webp),
    );
    write(
        &uploads.join("gen-signed.multipart"),
        &multipart("X", "signed.png", "image/png", &signed),
    );

    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let requests = corpus.join("generation_request");
    write(
        &requests.join("gen-i2i-jpeg.json"),
        serde_json::json!({
            "prompt": "a harbour at dawn, oil painting",
            "model": "stable-diffusion-1.5",
            "source_image": format!("data:image/jpeg;base64,{}", b64(&jpeg)),
            "strength": 0.55,
            "steps": 12,
        })
        .to_string()
        .as_bytes(),
    );
    write(
        &requests.join("gen-upscale-webp.json"),
        serde_json::json!({ "image": b64(&webp), "scale": 3 })
            .to_string()
            .as_bytes(),
    );
}
