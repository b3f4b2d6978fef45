//! PNG chunk handling and content credentials.

#[allow(unused_imports)]
use super::*;

/// The content-credentials signer and verifier, as `AppState` builds it
/// (`Credentials::from_config`: a generated test CA in the data dir).
pub(crate) fn credentials() -> &'static Credentials {
    static CREDENTIALS: OnceLock<Credentials> = OnceLock::new();
    CREDENTIALS.get_or_init(|| {
        let config = Config {
            data_dir: scratch("c2pa"),
            ..Config::default()
        };
        Credentials::from_config(&config).expect("the content-credentials signer")
    })
}

/// `png` signed as the queue signs a worker's image, for seed files.
pub fn signed_png(png_bytes: &[u8]) -> Option<Vec<u8>> {
    let (width, height) = pingvas_host::imaging::dimensions(png_bytes).ok()?;
    let record = GenerationRecord {
        job_id: "fuzz-seed".into(),
        job_type: "text_to_image".into(),
        model: "stable-diffusion-1.5".into(),
        model_hash: "e1441589a6".into(),
        seed: Some(7),
        sampler: Some("euler_a".into()),
        steps: Some(20),
        cfg_scale: Some(7.5),
        width,
        height,
        ..GenerationRecord::default()
    };
    credentials().sign_png(png_bytes, &record).ok()
}

/// Fuzz target `png_chunks`: the chunk code of `provenance::png` (strict),
/// then reading content credentials as `POST /images/verify` does
/// (`mime_of`, `Credentials::verify`), and for a quarter of the inputs
/// (by length) signing as the queue signs a worker's PNG and verifying the
/// result.
pub fn png_chunks(data: &[u8]) {
    let mime = provenance::mime_of(data);
    let _ = png::find_itxt(data, "XML:com.adobe.xmp");
    let _ = png::find_itxt(data, "parameters");
    let rewritable = match png::rewrite(data, &[]) {
        Ok(clean) => {
            assert_eq!(
                png::rewrite(&clean, &[]).as_deref(),
                Ok(clean.as_slice()),
                "rewriting a rewritten PNG changes it"
            );
            // The studio's text goes in; nothing of the input's survives.
            let text = String::from_utf8_lossy(&data[data.len().saturating_sub(40)..]).into_owned();
            let marked = png::rewrite(data, &[(*b"iTXt", png::itxt("parameters", &text))])
                .expect("a PNG rewritten once is rewritten with chunks too");
            assert_eq!(
                png::find_itxt(&marked, "parameters").as_deref(),
                Some(text.as_str()),
                "the studio's parameters chunk is not the one read back"
            );
            true
        }
        Err(_) => false,
    };
    let creds = credentials();
    if let Some(mime) = mime {
        let _ = tolerate(|| creds.verify(data, mime));
    }
    if !rewritable || !data.len().is_multiple_of(4) {
        return;
    }
    // `queue::credentials::with_credentials`: the size from the header,
    // then `sign_png` on the blocking pool.
    let Ok((width, height)) = pingvas_host::imaging::dimensions(data) else {
        return;
    };
    let record = GenerationRecord {
        job_id: "fuzz".into(),
        job_type: "text_to_image".into(),
        model: "stable-diffusion-1.5".into(),
        width,
        height,
        ..GenerationRecord::default()
    };
    let Some(Ok(signed)) = tolerate(|| creds.sign_png(data, &record)) else {
        return;
    };
    if let Some(report) = tolerate(|| creds.verify(&signed, "image/png")) {
        let v =
            report.unwrap_or_else(|e| panic!("the studio cannot read its own credentials: {e:#}"));
        assert!(
            v.has_manifest
                && v.signature_valid
                && v.trusted
                && v.unchanged
                && v.ai_generated
                && v.xmp_ai_generated,
            "a PNG the studio signed does not verify: {v:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// 6. Multipart uploads.
