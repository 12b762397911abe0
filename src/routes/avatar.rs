//! Reading an avatar upload: what `wx.uploadFile` sends (multipart/form-data, the file under any
//! field name) or a raw `image/*` body. A pure function of the content type and the body, so
//! the fuzz target runs exactly what the server runs. Whether the bytes are an image is the
//! domain's call (`ImageKind::sniff`), made by the service.

use crate::domain::ImageKind;
use crate::error::ApiError;
use axum::body::Bytes;

/// The body limit of the upload route: the largest image plus room for the multipart framing.
pub(crate) const MAX_BODY: usize = ImageKind::MAX_AVATAR_BYTES + 16 * 1024;

/// The image bytes of an upload. A form without a file part, an empty body or a body that is
/// neither a form nor an image is `unsupported_image`; a malformed form is `bad_request`.
pub async fn image_of(content_type: &str, body: Bytes) -> Result<Bytes, ApiError> {
    let lowered = content_type.to_ascii_lowercase();
    let image = if lowered.starts_with("multipart/form-data") {
        first_file(content_type, body).await?
    } else if lowered.is_empty()
        || lowered.starts_with("image/")
        || lowered.starts_with("application/octet-stream")
    {
        Some(body)
    } else {
        None
    };
    image
        .filter(|b| !b.is_empty())
        .ok_or(ApiError::UnsupportedImage)
}

/// The first part of the form that carries a file (a file name, or an `image/*` type).
async fn first_file(content_type: &str, body: Bytes) -> Result<Option<Bytes>, ApiError> {
    let malformed = || ApiError::BadRequest("malformed multipart/form-data body".into());
    let boundary = multer::parse_boundary(content_type).map_err(|_| malformed())?;
    let stream = futures::stream::once(async move { Ok::<Bytes, std::io::Error>(body) });
    let constraints = multer::Constraints::new().size_limit(
        multer::SizeLimit::new()
            .whole_stream(MAX_BODY as u64)
            .per_field(MAX_BODY as u64),
    );
    let mut form = multer::Multipart::with_constraints(stream, boundary, constraints);
    while let Some(field) = form.next_field().await.map_err(|_| malformed())? {
        let is_file = field.file_name().is_some()
            || field
                .content_type()
                .is_some_and(|m| m.type_() == mime::IMAGE);
        let bytes = field.bytes().await.map_err(|_| malformed())?;
        if is_file {
            return Ok(Some(bytes));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(parts: &[(&str, Option<&str>, &[u8])]) -> (String, Bytes) {
        let mut body = Vec::new();
        for (name, file, bytes) in parts {
            body.extend_from_slice(b"--XyZ\r\n");
            let disposition = match file {
                Some(f) => {
                    format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\n")
                }
                None => format!("Content-Disposition: form-data; name=\"{name}\"\r\n"),
            };
            body.extend_from_slice(disposition.as_bytes());
            body.extend_from_slice(b"\r\n");
            body.extend_from_slice(bytes);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"--XyZ--\r\n");
        (
            "multipart/form-data; boundary=XyZ".into(),
            Bytes::from(body),
        )
    }

    #[tokio::test]
    async fn the_file_part_of_a_form_is_the_image_whatever_its_field_name() {
        let (ct, body) = form(&[
            ("name", None, b"alice"),
            ("whatever", Some("tmp.png"), b"PNGBYTES"),
        ]);
        assert_eq!(
            image_of(&ct, body).await.unwrap(),
            Bytes::from_static(b"PNGBYTES")
        );
    }

    #[tokio::test]
    async fn a_form_without_a_file_an_empty_body_or_another_type_is_no_image() {
        let (ct, body) = form(&[("name", None, b"alice")]);
        assert_eq!(image_of(&ct, body).await, Err(ApiError::UnsupportedImage));
        assert_eq!(
            image_of("image/png", Bytes::new()).await,
            Err(ApiError::UnsupportedImage)
        );
        assert_eq!(
            image_of("application/json", Bytes::from_static(b"{}")).await,
            Err(ApiError::UnsupportedImage)
        );
    }

    #[tokio::test]
    async fn a_broken_form_is_a_bad_request() {
        let e = image_of(
            "multipart/form-data; boundary=XyZ",
            Bytes::from_static(b"--XyZ\r\nnope"),
        )
        .await
        .unwrap_err();
        assert!(matches!(e, ApiError::BadRequest(_)), "{e:?}");
        let e = image_of("multipart/form-data", Bytes::from_static(b"x"))
            .await
            .unwrap_err();
        assert!(matches!(e, ApiError::BadRequest(_)), "{e:?}");
    }
}
