//! A request's input images: measured from their headers first (the size
//! limits cost nothing to check), decoded for real only after every cheap
//! check passed, on blocking threads under a semaphore sized to the cores,
//! and stored only for a job the queue accepted.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use tokio::sync::Semaphore;

use super::{GenResult, GenerationError, invalid};
use crate::blobs::Blobs;
use crate::imaging;
use crate::store::images as img;
use crate::store::{Db, new_id};
use crate::users::Caller;

/// An input image of a request.
#[derive(Debug, Clone)]
pub struct Input {
    /// The request field it came in.
    pub field: String,
    /// Where the worker reads it.
    pub key: String,
    pub width: u32,
    pub height: u32,
    /// The bytes of an upload, stored only once the job is accepted;
    /// `None` for one of the caller's stored images.
    upload: Option<Arc<Vec<u8>>>,
}

/// Reads a base64 image (optionally a `data:` URL) or the id of an image
/// the caller owns, up to `max_side` pixels on each side, from its header.
pub async fn probe(
    db: &Db,
    caller: &Caller,
    field: &str,
    value: &str,
    max_side: u32,
) -> GenResult<Input> {
    let value = value.trim();
    if value.is_empty() {
        return Err(invalid(field, "empty"));
    }
    let too_big = |w: u32, h: u32| w > max_side || h > max_side;
    if uuid::Uuid::parse_str(value).is_ok() {
        let row = img::get(db, value)
            .await?
            .filter(|r| r.user_id == caller.id)
            .ok_or_else(|| invalid(field, "no such image of yours"))?;
        let (width, height) = (row.width as u32, row.height as u32);
        if too_big(width, height) {
            return Err(invalid(
                field,
                format!("at most {max_side}x{max_side} pixels"),
            ));
        }
        return Ok(Input {
            field: field.to_owned(),
            key: row.blob_key,
            width,
            height,
            upload: None,
        });
    }
    let data = value
        .strip_prefix("data:")
        .and_then(|rest| rest.split_once(";base64,").map(|(_, d)| d))
        .unwrap_or(value);
    let bytes = B64
        .decode(data.as_bytes())
        .map_err(|_| invalid(field, "neither an image id nor valid base64"))?;
    let (width, height) = imaging::dimensions(&bytes)
        .map_err(|e| invalid(field, format!("not a readable image: {e}")))?;
    if too_big(width, height) {
        return Err(invalid(
            field,
            format!("{width}x{height}; at most {max_side}x{max_side} pixels"),
        ));
    }
    Ok(Input {
        field: field.to_owned(),
        key: format!("inputs/{}/{}", caller.id, new_id()),
        width,
        height,
        upload: Some(Arc::new(bytes)),
    })
}

/// Decodes every upload for real (a header can lie) through the decode
/// gate the gallery's uploads pass too: at most as many at once as it has
/// permits, each decoder held to the size its header gave.
pub async fn decode_all(inputs: &[Input], gate: &Arc<Semaphore>) -> GenResult<()> {
    let gate = imaging::DecodeGate::from(gate.clone());
    for input in inputs {
        let Some(bytes) = input.upload.clone() else {
            continue;
        };
        let (width, height) = (input.width, input.height);
        gate.run(move || imaging::decode_sized(&bytes, width, height).map(drop))
            .await?
            .map_err(|e| invalid(&input.field, format!("not a readable image: {e}")))?;
    }
    Ok(())
}

/// Writes the uploads to blob storage; their keys, to remove them again
/// when the queue refuses the job.
pub async fn store_all(inputs: &[Input], blobs: &Blobs) -> GenResult<Vec<String>> {
    let uploads: Vec<(String, Arc<Vec<u8>>)> = inputs
        .iter()
        .filter_map(|i| i.upload.clone().map(|b| (i.key.clone(), b)))
        .collect();
    let mut stored: Vec<String> = Vec::new();
    for (key, bytes) in uploads {
        if let Err(e) = blobs.put(&key, bytes.as_ref().clone()).await {
            remove_all(stored, blobs).await;
            return Err(GenerationError::Internal(anyhow::anyhow!(
                "storing input {key}: {e}"
            )));
        }
        stored.push(key);
    }
    Ok(stored)
}

/// Bytes of a job's stored uploads: they count against the user's
/// storage ("other") from the enqueue; the sweep takes them off again when
/// it removes them after the job.
pub fn stored_bytes(inputs: &[Input]) -> i64 {
    inputs
        .iter()
        .filter_map(|i| i.upload.as_ref())
        .map(|b| b.len() as i64)
        .sum()
}

/// Removes uploads stored for a job the queue refused.
pub async fn remove_all(keys: Vec<String>, blobs: &Blobs) {
    for k in keys {
        let _ = blobs.delete(&k).await;
    }
}
