//! The request bodies of `POST /generate/*`, as the spec names their
//! fields. Each diffusion request is its own fields plus the `Common`
//! ones; everything optional has the default a user of the studio expects;
//! unknown fields are refused, by the names these types declare.

use serde::Deserialize;
use serde::de::{self, Visitor};
use serde_json::Value;
use utoipa::ToSchema;

use super::{GenResult, invalid};

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoraRequest {
    pub name: String,
    // Numbers are read as f64 and checked before they are narrowed: serde
    // would round 30.000000000000004 into range as an f32.
    pub weight: f64,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ControlNetRequest {
    pub model: String,
    /// base64 image or an image id of yours.
    pub image: String,
    #[serde(default = "one")]
    pub weight: f64,
}

/// A published node plugin to run inside the job.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeRequest {
    pub name: String,
    /// Default: the newest version that is not yanked.
    pub version: Option<String>,
    /// The node's parameters (a JSON object).
    #[serde(default)]
    pub parameters: Option<serde_json::Value>,
}

fn one() -> f64 {
    1.0
}

/// Fields every diffusion request shares.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct Common {
    pub negative_prompt: Option<String>,
    pub steps: Option<u32>,
    pub cfg_scale: Option<f64>,
    pub sampler: Option<String>,
    /// -1 (default): a random seed, recorded with the job.
    pub seed: Option<i64>,
    pub batch_size: Option<u32>,
    pub loras: Option<Vec<LoraRequest>>,
    pub save_to_board: Option<String>,
    pub pre_nodes: Option<Vec<NodeRequest>>,
    pub post_nodes: Option<Vec<NodeRequest>>,
}

/// A diffusion request as the API document shows it: its own fields and
/// the common ones (validation parses the two parts apart, so each
/// failing field keeps its name). One concrete type a request, so each
/// has its own schema.
macro_rules! with_common {
    ($name:ident, $own:ty, $doc:literal) => {
        #[doc = $doc]
        #[derive(Debug, Clone, Deserialize, ToSchema)]
        pub struct $name {
            #[serde(flatten)]
            pub own: $own,
            #[serde(flatten)]
            pub common: Common,
        }
    };
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct TextToImage {
    pub prompt: String,
    pub model: String,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub controlnet: Option<ControlNetRequest>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct ImageToImage {
    pub prompt: String,
    pub model: String,
    /// base64 image or an image id of yours.
    pub source_image: String,
    /// 0..1, default 0.75.
    pub strength: Option<f64>,
    /// Output size; default the source's (rounded down to a multiple of 8).
    pub width: Option<u32>,
    pub height: Option<u32>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct Inpaint {
    pub prompt: String,
    pub model: String,
    pub source_image: String,
    /// White repaints, black keeps; the source's size.
    pub mask_image: String,
}

with_common!(
    TextToImageRequest,
    TextToImage,
    "텍스트에서 이미지 생성 요청."
);
with_common!(
    ImageToImageRequest,
    ImageToImage,
    "이미지에서 이미지 생성 요청."
);
with_common!(InpaintRequest, Inpaint, "인페인팅 요청.");

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpscaleRequest {
    /// base64 image or an image id of yours.
    pub image: String,
    /// 2 (default), 3 or 4.
    pub scale: Option<u32>,
    /// An upscaler of the catalogue; default `real-esrgan`.
    pub model: Option<String>,
    pub save_to_board: Option<String>,
    pub post_nodes: Option<Vec<NodeRequest>>,
}

/// Refuses fields none of `accepted` declares, naming the first.
pub fn check_fields(body: &Value, accepted: &[&[&str]]) -> GenResult<()> {
    let Some(obj) = body.as_object() else {
        return Err(invalid("body", "expected a JSON object"));
    };
    for key in obj.keys() {
        if !accepted.iter().any(|fields| fields.contains(&key.as_str())) {
            return Err(invalid(key.as_str(), "unknown field"));
        }
    }
    Ok(())
}

/// Parses a diffusion request: its own fields `T` and the common ones,
/// each part on its own so a failing field keeps its name.
pub fn parse_with_common<T: serde::de::DeserializeOwned>(body: Value) -> GenResult<(T, Common)> {
    check_fields(&body, &[fields_of::<T>(), fields_of::<Common>()])?;
    let common = parse::<Common>(body.clone())?;
    Ok((parse::<T>(body)?, common))
}

/// Parses a request body into `T`, naming the failing field.
pub fn parse<T: serde::de::DeserializeOwned>(body: Value) -> GenResult<T> {
    // serde reads a struct from an array of its fields too.
    if !body.is_object() {
        return Err(invalid("body", "expected a JSON object"));
    }
    serde_path_to_error::deserialize(body).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { "body".to_owned() } else { path };
        invalid(field, e.inner().to_string())
    })
}

/// The JSON field names a struct accepts, as its `Deserialize` declares
/// them (asked of the derived impl, which names its fields to the
/// deserializer).
pub fn fields_of<T: for<'de> Deserialize<'de>>() -> &'static [&'static str] {
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(FieldNames(&mut fields));
    fields
}

/// A deserializer that only records the field list it is asked for.
struct FieldNames<'a>(&'a mut &'static [&'static str]);

impl<'de> de::Deserializer<'de> for FieldNames<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("field names only"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = fields;
        Err(de::Error::custom("field names only"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
        byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map
        enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generation::GenerationError;
    use serde_json::json;

    #[test]
    fn unknown_fields_are_named() {
        let body = json!({ "prompt": "x", "model": "m", "stepz": 3 });
        match parse_with_common::<TextToImage>(body) {
            Err(GenerationError::Invalid { field, .. }) => assert_eq!(field, "stepz"),
            other => panic!("{other:?}"),
        }
        let fields = [fields_of::<TextToImage>(), fields_of::<Common>()];
        assert!(check_fields(&json!({ "prompt": "x", "steps": 3 }), &fields).is_ok());
    }

    #[test]
    fn type_errors_name_the_field() {
        let body = json!({ "prompt": "x", "model": "m", "width": "wide" });
        match parse_with_common::<TextToImage>(body) {
            Err(GenerationError::Invalid { field, .. }) => assert_eq!(field, "width"),
            other => panic!("{other:?}"),
        }
        let body =
            json!({ "prompt": "x", "model": "m", "loras": [{ "name": "a", "weight": "x" }] });
        match parse::<Common>(body) {
            Err(GenerationError::Invalid { field, .. }) => assert_eq!(field, "loras[0].weight"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn field_names_come_from_the_types() {
        assert_eq!(
            fields_of::<TextToImage>(),
            ["prompt", "model", "width", "height", "controlnet"]
        );
        assert!(fields_of::<Common>().contains(&"post_nodes"));
        assert_eq!(fields_of::<UpscaleRequest>().len(), 5);
    }
}
