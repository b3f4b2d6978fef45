//! The cost of content credentials on a job's completion path (figures in
//! BENCHMARKS.md): signing one generated 1024×1024 PNG (chunk rewrite,
//! XMP, C2PA manifest with its SHA-256 hard binding and an ES256
//! signature) against what storing the image already costs without them
//! (PNG decode and JPEG thumbnail, `queue::results::store_png`'s work).
//!
//! `cargo bench -p pingvas-host --bench credentials`

use criterion::{Criterion, criterion_group, criterion_main};
use pingvas_host::imaging;
use pingvas_host::provenance::{Credentials, GenerationRecord, PluginUse, keys};

fn generated_png() -> Vec<u8> {
    // Noise-like content, so the PNG is as large as a real render's.
    let img = image::RgbaImage::from_fn(1024, 1024, |x, y| {
        let v = (x.wrapping_mul(2_654_435_761) ^ y.wrapping_mul(40_503)) as u8;
        image::Rgba([v, v.rotate_left(3), v.rotate_left(5), 255])
    });
    imaging::encode_png(&img).unwrap()
}

fn bench(c: &mut Criterion) {
    let png = generated_png();
    let creds = Credentials::new(&keys::generate().unwrap(), c2pa::SigningAlg::Es256).unwrap();
    let record = GenerationRecord {
        job_id: "bench".into(),
        job_type: "text_to_image".into(),
        model: "stable-diffusion-xl".into(),
        model_hash: "31e35c80fc".into(),
        seed: Some(1),
        sampler: Some("euler_a".into()),
        steps: Some(30),
        cfg_scale: Some(7.0),
        width: 1024,
        height: 1024,
        plugins: vec![PluginUse {
            name: "watermark".into(),
            version: "0.1.0".into(),
            sha256: "ab".repeat(32),
            stage: "post".into(),
        }],
        ..Default::default()
    };
    let mut g = c.benchmark_group("store_1024px_png");
    g.sample_size(20);
    g.bench_function("baseline_decode_and_thumbnail", |b| {
        b.iter(|| {
            let decoded = imaging::decode_png(&png).unwrap();
            imaging::thumbnail_jpeg(&decoded).unwrap()
        })
    });
    g.bench_function("sign_credentials", |b| {
        b.iter(|| creds.sign_png(&png, &record).unwrap())
    });
    let signed = creds.sign_png(&png, &record).unwrap();
    g.bench_function("verify_credentials", |b| {
        b.iter(|| creds.verify(&signed, "image/png").unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
