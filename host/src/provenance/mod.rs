//! Content credentials: every image the studio generates says that it was
//! made by an AI model, and how (EU AI Act, Article 50). The host — never
//! a worker or a plugin — writes them when it stores a job's output, after
//! every post-node ran:
//!
//! - IPTC `DigitalSourceType` = `trainedAlgorithmicMedia` in XMP and the
//!   generation parameters as text chunks (`png`);
//! - a C2PA manifest (the `c2pa` crate): a `c2pa.created` action with that
//!   digital source type and the model as software agent, a
//!   `c2pa.edited` action for each post-node (name@version, sha256), the
//!   studio's `studio.pingvas.generation` assertion (model and hash, seed,
//!   sampler, steps, every plugin), signed with the operator's key
//!   (`keys`). The hard binding covers every byte outside the manifest,
//!   so changed pixels (or metadata) show on verification.
//!
//! Whatever a worker's PNG carried besides pixels is dropped first, so a
//! plugin can neither remove the marking nor bring a manifest of its own.

pub mod keys;
pub mod png;

use std::io::Cursor;

use anyhow::Context as _;
use c2pa::{Builder, Context, Reader, Settings, SigningAlg};
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use keys::SigningMaterial;

/// IPTC's term for media a trained model made.
pub const TRAINED_ALGORITHMIC_MEDIA: &str =
    "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia";
/// The label of the studio's own assertion.
pub const GENERATION_ASSERTION: &str = "studio.pingvas.generation";
const CLAIM_GENERATOR: &str = "Pingvas Studio";

/// A plugin that ran on the image's way (pre-nodes shape the request,
/// post-nodes change the pixels).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PluginUse {
    pub name: String,
    pub version: String,
    /// The component's SHA-256, hex (empty when the registry no longer
    /// knows it).
    pub sha256: String,
    /// `pre`, `post` or `workflow`.
    pub stage: String,
}

/// How an image was made: what the credentials record.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct GenerationRecord {
    pub job_id: String,
    pub job_type: String,
    pub model: String,
    pub model_hash: String,
    /// Every model a workflow used (the first is `model`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
    pub seed: Option<u64>,
    pub sampler: Option<String>,
    pub steps: Option<u32>,
    pub cfg_scale: Option<f32>,
    pub width: u32,
    pub height: u32,
    pub backend: Option<String>,
    pub plugins: Vec<PluginUse>,
}

impl GenerationRecord {
    /// The `parameters` text chunk, in the form image tools read
    /// (A1111 style): the parameters, without the prompt.
    fn parameters_text(&self) -> String {
        let mut parts = vec![format!("Model: {}", self.model)];
        if !self.model_hash.is_empty() {
            parts.push(format!("Model hash: {}", self.model_hash));
        }
        if let Some(s) = self.steps {
            parts.push(format!("Steps: {s}"));
        }
        if let Some(s) = &self.sampler {
            parts.push(format!("Sampler: {s}"));
        }
        if let Some(c) = self.cfg_scale {
            parts.push(format!("CFG scale: {c}"));
        }
        if let Some(s) = self.seed {
            parts.push(format!("Seed: {s}"));
        }
        parts.push(format!("Size: {}x{}", self.width, self.height));
        for p in &self.plugins {
            parts.push(format!("Plugin: {}@{}", p.name, p.version));
        }
        parts.push("Generator: Pingvas Studio (AI-generated)".into());
        parts.join(", ")
    }
}

fn xmp(instance_id: &str) -> String {
    format!(
        "<?xpacket begin=\"\u{feff}\" id=\"W5M0MpCehiHzreSzNTczkc9d\"?>\n\
         <x:xmpmeta xmlns:x=\"adobe:ns:meta/\">\n \
         <rdf:RDF xmlns:rdf=\"http://www.w3.org/1999/02/22-rdf-syntax-ns#\">\n  \
         <rdf:Description rdf:about=\"\"\n    \
         xmlns:Iptc4xmpExt=\"http://iptc.org/std/Iptc4xmpExt/2008-02-29/\"\n    \
         xmlns:xmp=\"http://ns.adobe.com/xap/1.0/\"\n    \
         xmlns:xmpMM=\"http://ns.adobe.com/xap/1.0/mm/\"\n    \
         Iptc4xmpExt:DigitalSourceType=\"{TRAINED_ALGORITHMIC_MEDIA}\"\n    \
         xmp:CreatorTool=\"{CLAIM_GENERATOR}\"\n    \
         xmpMM:InstanceID=\"xmp:iid:{instance_id}\"/>\n \
         </rdf:RDF>\n</x:xmpmeta>\n<?xpacket end=\"r\"?>"
    )
}

/// What an image file is, by its first bytes (the formats checked here).
pub fn mime_of(bytes: &[u8]) -> Option<&'static str> {
    match image::guess_format(bytes).ok()? {
        image::ImageFormat::Png => Some("image/png"),
        image::ImageFormat::Jpeg => Some("image/jpeg"),
        image::ImageFormat::WebP => Some("image/webp"),
        _ => None,
    }
}

/// What verification found.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Verification {
    /// The file carries a C2PA manifest.
    pub has_manifest: bool,
    /// `Trusted` (valid, and signed by a trusted signer), `Valid` (valid,
    /// signer unknown), `Invalid`; `null` without a manifest.
    pub validation_state: Option<String>,
    /// The signature checks out over the claim.
    pub signature_valid: bool,
    /// The signer chains to a trusted anchor (this studio's, the
    /// operator's).
    pub trusted: bool,
    /// No byte the manifest binds (pixels, other chunks) changed since
    /// signing.
    pub unchanged: bool,
    /// The manifest declares the image AI-generated
    /// (`trainedAlgorithmicMedia`).
    pub ai_generated: bool,
    /// The XMP says so too.
    pub xmp_ai_generated: bool,
    /// What made the claim (`name/version`).
    pub claim_generator: Option<String>,
    /// The signing certificate's organisation.
    pub signer: Option<String>,
    /// The `c2pa.actions` entries.
    #[schema(value_type = Vec<Object>)]
    pub actions: Vec<Value>,
    /// The studio's generation record, as signed.
    #[schema(value_type = Option<Object>)]
    pub generation: Option<Value>,
    /// Failure codes of the validation (`assertion.dataHash.mismatch` …).
    pub problems: Vec<String>,
}

impl Verification {
    /// The report on a file with no manifest.
    fn absent(xmp_ai_generated: bool) -> Self {
        Self {
            has_manifest: false,
            validation_state: None,
            signature_valid: false,
            trusted: false,
            unchanged: false,
            ai_generated: false,
            xmp_ai_generated,
            claim_generator: None,
            signer: None,
            actions: Vec::new(),
            generation: None,
            problems: Vec::new(),
        }
    }

    /// The report on a file whose manifest cannot be read at all.
    pub fn unreadable(reason: &str) -> Self {
        Self {
            has_manifest: true,
            validation_state: Some("Invalid".into()),
            problems: vec![format!("unreadable: {reason}")],
            ..Self::absent(false)
        }
    }
}

/// `name/version` of a manifest's claim generator (v2 claims keep it in
/// `claim_generator_info`, v1 in `claim_generator`).
fn claim_generator(m: &c2pa::Manifest) -> Option<String> {
    if let Some(info) = m.claim_generator_info.as_ref().and_then(|i| i.first()) {
        return Some(match &info.version {
            Some(v) => format!("{}/{v}", info.name),
            None => info.name.clone(),
        });
    }
    m.claim_generator().map(str::to_owned)
}

pub struct Credentials {
    signer: c2pa::BoxedSigner,
    /// Built once: signing (no thumbnails: the crate is built without
    /// them) and verifying (with the trust anchors).
    sign_context: std::sync::Arc<Context>,
    verify_context: std::sync::Arc<Context>,
}

impl Credentials {
    /// The signer from the operator's material, or the generated test key.
    pub fn from_config(config: &crate::config::Config) -> anyhow::Result<Self> {
        use secrecy::ExposeSecret;
        let mut material = match (&config.c2pa_cert_chain_file, &config.c2pa_private_key) {
            (Some(chain), Some(key)) => SigningMaterial {
                chain_pem: std::fs::read_to_string(chain)
                    .with_context(|| format!("c2pa_cert_chain_file {}", chain.display()))?,
                key_pem: key.expose_secret().to_owned(),
                trust_pem: None,
            },
            (None, None) => keys::generated(&config.data_dir)?,
            _ => anyhow::bail!("c2pa_cert_chain_file and c2pa_private_key go together"),
        };
        if let Some(path) = &config.c2pa_trust_anchors_file {
            let extra = std::fs::read_to_string(path)
                .with_context(|| format!("c2pa_trust_anchors_file {}", path.display()))?;
            material.trust_pem = Some(material.trust_pem.unwrap_or_default() + &extra);
        }
        let alg: SigningAlg = config.c2pa_signing_alg.parse().map_err(|_| {
            anyhow::anyhow!("c2pa_signing_alg: {} is unknown", config.c2pa_signing_alg)
        })?;
        Self::new(&material, alg)
    }

    pub fn new(material: &SigningMaterial, alg: SigningAlg) -> anyhow::Result<Self> {
        let signer = c2pa::create_signer::from_keys(
            material.chain_pem.as_bytes(),
            material.key_pem.as_bytes(),
            alg,
            None,
        )
        .context("the content-credentials key and certificate chain")?;
        // No thumbnail in the manifest, and no re-reading of what was just
        // signed with our own key (half the signing time of a small image;
        // the tests verify what the signer makes).
        let no_thumbnails = Settings::new()
            .with_value("builder.thumbnail.enabled", false)?
            .with_value("verify.verify_after_sign", false)?;
        let mut verify_settings = Settings::new();
        if let Some(pem) = &material.trust_pem {
            verify_settings = verify_settings
                .with_value("trust.user_anchors", pem.as_str())
                .context("trust anchors")?;
        }
        Ok(Self {
            signer,
            sign_context: Context::new().with_settings(no_thumbnails)?.into_shared(),
            verify_context: Context::new().with_settings(verify_settings)?.into_shared(),
        })
    }

    /// The PNG with the studio's XMP, text chunks and a signed C2PA
    /// manifest; CPU-bound (run it on the blocking pool).
    pub fn sign_png(&self, png: &[u8], record: &GenerationRecord) -> anyhow::Result<Vec<u8>> {
        let instance = uuid::Uuid::now_v7().to_string();
        let marked = png::rewrite(
            png,
            &[
                (*b"iTXt", png::itxt("XML:com.adobe.xmp", &xmp(&instance))),
                (*b"iTXt", png::itxt("parameters", &record.parameters_text())),
                (*b"tEXt", b"Software\0Pingvas Studio".to_vec()),
            ],
        )
        .map_err(|e| anyhow::anyhow!(e))?;
        let mut builder = Builder::from_shared_context(&self.sign_context).with_definition(json!({
            "title": format!("{}.png", record.job_id),
            "format": "image/png",
            "claim_generator_info": [{ "name": CLAIM_GENERATOR, "version": env!("CARGO_PKG_VERSION") }],
        }))?;
        builder.add_action(json!({
            "action": "c2pa.created",
            "digitalSourceType": TRAINED_ALGORITHMIC_MEDIA,
            "softwareAgent": { "name": record.model, "version": record.model_hash },
            "description": format!("Generated by {} ({})", record.model, record.job_type),
        }))?;
        for p in record.plugins.iter().filter(|p| p.stage == "post") {
            builder.add_action(json!({
                "action": "c2pa.edited",
                "softwareAgent": { "name": p.name, "version": p.version },
                "description": format!("Post-processing node {}@{} (sha256 {})", p.name, p.version, p.sha256),
            }))?;
        }
        builder.add_assertion(GENERATION_ASSERTION, record)?;
        let mut source = Cursor::new(marked);
        let mut dest = Cursor::new(Vec::new());
        builder
            .sign(self.signer.as_ref(), "image/png", &mut source, &mut dest)
            .context("signing the C2PA manifest")?;
        Ok(dest.into_inner())
    }

    /// Reads the credentials of an image (`format` a MIME type) and checks
    /// them; CPU-bound.
    pub fn verify(&self, bytes: &[u8], format: &str) -> anyhow::Result<Verification> {
        let xmp_ai = png::find_itxt(bytes, "XML:com.adobe.xmp")
            .is_some_and(|x| x.contains(TRAINED_ALGORITHMIC_MEDIA));
        let reader = match Reader::from_shared_context(&self.verify_context)
            .with_stream(format, Cursor::new(bytes))
        {
            Ok(r) => r,
            Err(c2pa::Error::JumbfNotFound) | Err(c2pa::Error::UnsupportedType) => {
                return Ok(Verification::absent(xmp_ai));
            }
            Err(e) => return Err(e).context("reading the manifest"),
        };
        let state = reader.validation_state();
        let problems: Vec<String> = reader
            .validation_results()
            .and_then(|r| r.active_manifest())
            .map(|m| m.failure().iter().map(|s| s.code().to_owned()).collect())
            .unwrap_or_default();
        let manifest = reader.active_manifest();
        let mut actions = Vec::new();
        let mut generation = None;
        for a in manifest.map(|m| m.assertions()).unwrap_or_default() {
            let Ok(value) = a.value() else { continue };
            if a.label().starts_with("c2pa.actions") {
                actions.extend(value["actions"].as_array().cloned().unwrap_or_default());
            } else if a.label() == GENERATION_ASSERTION {
                generation = Some(value.clone());
            }
        }
        let ai_generated = actions.iter().any(|a| {
            a["action"] == "c2pa.created" && a["digitalSourceType"] == TRAINED_ALGORITHMIC_MEDIA
        });
        let unchanged = !problems.iter().any(|c| c.contains("mismatch"));
        let signature_valid = !problems
            .iter()
            .any(|c| c.starts_with("claimSignature") || c.starts_with("signingCredential.invalid"));
        Ok(Verification {
            has_manifest: true,
            validation_state: Some(format!("{state:?}")),
            signature_valid,
            trusted: state == c2pa::ValidationState::Trusted,
            unchanged,
            ai_generated,
            xmp_ai_generated: xmp_ai,
            claim_generator: manifest.and_then(claim_generator),
            signer: manifest.and_then(|m| m.issuer()),
            actions,
            generation,
            problems,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> GenerationRecord {
        GenerationRecord {
            job_id: "job-1".into(),
            job_type: "text_to_image".into(),
            model: "stable-diffusion-1.5".into(),
            model_hash: "blake3:abc".into(),
            seed: Some(42),
            sampler: Some("euler_a".into()),
            steps: Some(20),
            cfg_scale: Some(7.0),
            width: 64,
            height: 48,
            backend: Some("cpu-reference".into()),
            plugins: vec![PluginUse {
                name: "watermark".into(),
                version: "1.0.0".into(),
                sha256: "ff".repeat(32),
                stage: "post".into(),
            }],
            ..Default::default()
        }
    }

    fn png(w: u32, h: u32) -> Vec<u8> {
        let img = image::RgbaImage::from_fn(w, h, |x, y| image::Rgba([x as u8, y as u8, 90, 255]));
        crate::imaging::encode_png(&img).unwrap()
    }

    #[test]
    fn a_signed_image_verifies_and_a_changed_one_does_not() {
        let creds = Credentials::new(&keys::generate().unwrap(), SigningAlg::Es256).unwrap();
        let signed = creds.sign_png(&png(64, 48), &record()).unwrap();
        let v = creds.verify(&signed, "image/png").unwrap();
        assert!(v.has_manifest, "{v:?}");
        assert_eq!(v.validation_state.as_deref(), Some("Trusted"), "{v:?}");
        assert!(
            v.signature_valid && v.trusted && v.unchanged && v.ai_generated && v.xmp_ai_generated,
            "{v:?}"
        );
        assert_eq!(v.generation.as_ref().unwrap()["seed"], 42);
        assert_eq!(
            v.generation.as_ref().unwrap()["plugins"][0]["name"],
            "watermark"
        );
        let kinds: Vec<_> = v.actions.iter().map(|a| a["action"].clone()).collect();
        assert_eq!(kinds, vec![json!("c2pa.created"), json!("c2pa.edited")]);
        assert!(
            png::find_itxt(&signed, "parameters")
                .unwrap()
                .contains("Seed: 42")
        );
        // Still a PNG with the same pixels.
        assert_eq!(
            crate::imaging::decode(&signed).unwrap(),
            crate::imaging::decode(&png(64, 48)).unwrap()
        );

        // One pixel changed, the file rebuilt around the same manifest.
        let mut img = crate::imaging::decode(&signed).unwrap();
        img.put_pixel(3, 3, image::Rgba([255, 0, 0, 255]));
        let repainted = crate::imaging::encode_png(&img).unwrap();
        let manifest_chunks = signed_chunks(&signed);
        let forged = png::rewrite(&repainted, &manifest_chunks).unwrap();
        let v = creds.verify(&forged, "image/png").unwrap();
        assert!(v.has_manifest && !v.unchanged, "{v:?}");
        assert_eq!(v.validation_state.as_deref(), Some("Invalid"));

        // Another signer's studio: valid but not trusted here.
        let other = Credentials::new(&keys::generate().unwrap(), SigningAlg::Es256).unwrap();
        let v = other.verify(&signed, "image/png").unwrap();
        assert!(v.signature_valid && v.unchanged && !v.trusted, "{v:?}");

        // No manifest at all.
        let v = creds.verify(&png(8, 8), "image/png").unwrap();
        assert!(!v.has_manifest && !v.ai_generated);
    }

    /// The chunks of a signed PNG that are not pixels.
    fn signed_chunks(png_bytes: &[u8]) -> Vec<png::OwnedChunk> {
        png::ancillary(png_bytes).unwrap()
    }
}
