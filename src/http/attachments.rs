//! Attachments over HTTP: `POST /api/attachments` (a raw body, or one file in a multipart form),
//! `GET /api/attachments/{id}` (with the token, or a signed link) and
//! `GET /api/attachments/{id}/link`. The bytes stream both ways: an upload is never held whole
//! in memory, and a download is read from storage as it is sent.

use std::ops::Range;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use futures::{Stream, TryStreamExt};
use serde::Deserialize;

use super::AppState;
use super::extract::{Caller, QueryParams};
use super::openapi::{AttachmentData, Failure, LinkData, Success};
use crate::auth::{AuthFailure, bearer_token};
use crate::chat::Upload;
use crate::domain::{Attachment, AttachmentId, Timestamp, UserId};
use crate::error::{Error, Result};
use crate::protocol::{Bucket, Reply};

/// What a multipart form may add around its file (boundaries, part headers) beyond the file's
/// own size, before its `Content-Length` alone is refused.
const FORM_OVERHEAD: u64 = 64 * 1024;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/api/attachments",
            // The router's body limit is for JSON: an upload is bounded by its own setting,
            // counted as it streams.
            post(upload).layer(DefaultBodyLimit::disable()),
        )
        .route("/api/attachments/{id}", get(download))
        .route("/api/attachments/{id}/link", get(link))
}

fn attachment_id(raw: &str) -> Result<AttachmentId> {
    AttachmentId::parse(raw)
        .ok_or_else(|| Error::invalid("id", "must be an attachment id (a UUID)"))
}

#[derive(Deserialize, Default)]
pub(super) struct UploadQuery {
    /// The file's name, for a raw upload (a multipart form gives it with the file).
    name: Option<String>,
}

/// The bytes of a body, with read errors as the protocol's.
fn chunks<S, E>(stream: S) -> impl Stream<Item = Result<Bytes>> + Unpin + Send
where
    S: Stream<Item = std::result::Result<Bytes, E>> + Unpin + Send,
    E: std::fmt::Display,
{
    stream.map_err(|e| Error::InvalidPayload {
        field: None,
        message: format!("the upload was interrupted: {e}"),
    })
}

#[utoipa::path(post, path = "/api/attachments", tag = "user", security(("user_jwt" = [])), params(("name" = Option<String>, Query, description = "The file's name, for a raw upload (a multipart form gives it with the file)")), request_body(content((Vec<u8> = "application/octet-stream"), (Vec<u8> = "multipart/form-data")), description = "The file: the raw bytes with their `Content-Type`, or a `multipart/form-data` form with a `file` part. At most `CONFAB_MAX_ATTACHMENT_BYTES`; the type is read from the bytes."), responses((status = 201, description = "Stored, not yet sent", body = Success<AttachmentData>), (status = "4XX", description = "Refused: the error envelope (docs/PROTOCOL.md, \"Errors\")", body = Failure), (status = "5XX", description = "A server-side failure", body = Failure)))]
pub(super) async fn upload(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(query): QueryParams<UploadQuery>,
    request: Request,
) -> Result<Response> {
    let Caller(identity) = caller;
    state.limiter.check_upload(&identity.user_id)?;
    let actor = state.chat.caller(identity).await?;
    let max = state.chat.max_attachment_bytes();
    let headers = request.headers();
    let declared = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let is_form = declared.as_deref().is_some_and(|t| {
        t.trim_start()
            .to_ascii_lowercase()
            .starts_with("multipart/form-data")
    });
    // Refused before a byte of it is read when it says it is too large.
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let allowed = if is_form { max + FORM_OVERHEAD } else { max };
    if length.is_some_and(|l| l > allowed) {
        return Err(Error::too_large(
            "file",
            format!("at most {max} bytes are accepted"),
        ));
    }
    let attachment = if is_form {
        let mut form = Multipart::from_request(request, &state)
            .await
            .map_err(|e| Error::invalid("file", e.body_text()))?;
        loop {
            let field = form
                .next_field()
                .await
                .map_err(|e| Error::invalid("file", e.body_text()))?
                .ok_or_else(|| Error::invalid("file", "the form has no file field"))?;
            // The file: the field named `file`, or the first that carries a file name.
            if field.name() != Some("file") && field.file_name().is_none() {
                continue;
            }
            let upload = Upload {
                declared_type: field.content_type().map(str::to_owned),
                name: field.file_name().map(str::to_owned).or(query.name),
            };
            break state.chat.upload(&actor, upload, chunks(field)).await?;
        }
    } else {
        let upload = Upload {
            declared_type: declared,
            name: query.name,
        };
        let body = request.into_body().into_data_stream();
        state.chat.upload(&actor, upload, chunks(body)).await?
    };
    Ok(super::success(
        StatusCode::CREATED,
        &Reply::Attachment { attachment },
    ))
}

#[utoipa::path(get, path = "/api/attachments/{id}/link", tag = "user", security(("user_jwt" = [])), params(("id" = String, Path, description = "The attachment id")), responses((status = 200, description = "A signed download link, relative to the server", body = Success<LinkData>), (status = "4XX", description = "Refused: the error envelope (docs/PROTOCOL.md, \"Errors\")", body = Failure), (status = "5XX", description = "A server-side failure", body = Failure)))]
pub(super) async fn link(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response> {
    let Caller(identity) = caller;
    let id = attachment_id(&id)?;
    state.limiter.check(&identity.user_id, Bucket::Other)?;
    let (query, expires_at) = state.chat.attachment_link(&identity.user_id, id).await?;
    Ok(super::success(
        StatusCode::OK,
        &Reply::AttachmentLink {
            url: format!("/api/attachments/{id}?{query}"),
            expires_at,
        },
    ))
}

/// A signed link's query string.
#[derive(Deserialize, Default)]
pub(super) struct LinkQuery {
    u: Option<String>,
    exp: Option<i64>,
    sig: Option<String>,
}

/// Who is downloading: the token's user, or the user a valid link was made for (and until
/// when the link lasts).
fn downloader(
    state: &AppState,
    headers: &HeaderMap,
    id: AttachmentId,
    link: &LinkQuery,
) -> Result<(UserId, Option<i64>)> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value
            .to_str()
            .map_err(|_| Error::Unauthorized(AuthFailure::Invalid))?;
        let token = bearer_token(Some(value)).map_err(Error::Unauthorized)?;
        let identity = state.verifier.verify(token).map_err(Error::Unauthorized)?;
        return Ok((identity.user_id, None));
    }
    match (&link.u, link.exp, &link.sig) {
        (Some(user), Some(exp), Some(sig)) => state
            .chat
            .check_attachment_link(id, user, exp, sig)
            .map(|user| (user, Some(exp)))
            // An expired link and a forged one alike: get a new link.
            .ok_or(Error::Unauthorized(AuthFailure::Expired)),
        (None, None, None) => Err(Error::Unauthorized(AuthFailure::Missing)),
        _ => Err(Error::Unauthorized(AuthFailure::Invalid)),
    }
}

#[utoipa::path(get, path = "/api/attachments/{id}", tag = "user", security(("user_jwt" = []), ()), params(("id" = String, Path, description = "The attachment id"), ("u" = Option<String>, Query, description = "A signed link's user"), ("exp" = Option<i64>, Query, description = "A signed link's expiry (unix seconds)"), ("sig" = Option<String>, Query, description = "A signed link's signature")), responses((status = 200, description = "The file's bytes (`Range` requests are answered 206)", content_type = "application/octet-stream", body = Vec<u8>), (status = 206, description = "The requested range of the file", content_type = "application/octet-stream", body = Vec<u8>), (status = 304, description = "Not modified (`If-None-Match`)"), (status = "4XX", description = "Refused: the error envelope (docs/PROTOCOL.md, \"Errors\")", body = Failure), (status = "5XX", description = "A server-side failure", body = Failure)))]
pub(super) async fn download(
    State(state): State<AppState>,
    Path(id): Path<String>,
    QueryParams(link): QueryParams<LinkQuery>,
    headers: HeaderMap,
) -> Result<Response> {
    let id = attachment_id(&id)?;
    let (user, link_expires) = downloader(&state, &headers, id, &link)?;
    state.limiter.check(&user, Bucket::Other)?;
    let attachment = state.chat.visible_attachment(&user, id).await?;
    let etag = format!("\"{id}\"");
    let mut common = HeaderMap::new();
    common.insert(header::ETAG, value(&etag));
    common.insert(header::CACHE_CONTROL, value(&cache_control(link_expires)));
    // The token's answer differs by token; a link's is in its URL.
    common.insert(header::VARY, HeaderValue::from_static("Authorization"));
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
    {
        return Ok((StatusCode::NOT_MODIFIED, common).into_response());
    }
    let size = attachment.size as u64;
    // A range is honoured unless `If-Range` names another version (there is only one).
    let range = headers
        .get(header::RANGE)
        .filter(|_| {
            headers
                .get(header::IF_RANGE)
                .is_none_or(|v| v.to_str().is_ok_and(|v| v == etag))
        })
        .and_then(|v| v.to_str().ok())
        .map(|v| parse_range(v, size))
        .unwrap_or(RangeAnswer::Whole);
    let (status, range) = match range {
        RangeAnswer::Whole => (StatusCode::OK, None),
        RangeAnswer::Part(r) => (StatusCode::PARTIAL_CONTENT, Some(r)),
        RangeAnswer::Unsatisfiable => {
            common.insert(header::CONTENT_RANGE, value(&format!("bytes */{size}")));
            return Ok((StatusCode::RANGE_NOT_SATISFIABLE, common).into_response());
        }
    };
    let download = state
        .chat
        .open_attachment(attachment, range.clone())
        .await?;
    let mut response = Response::new(Body::from_stream(download.body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.extend(common);
    safe_headers(headers, &download.attachment);
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    let length = match &range {
        Some(r) => {
            headers.insert(
                header::CONTENT_RANGE,
                value(&format!("bytes {}-{}/{size}", r.start, r.end - 1)),
            );
            r.end - r.start
        }
        None => size,
    };
    headers.insert(header::CONTENT_LENGTH, value(&length.to_string()));
    Ok(response)
}

fn value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).expect("header values built from ids, numbers and ASCII")
}

/// With a token, the browser asks again each time (`no-cache`, answered `304` while its copy is
/// current), so a member who left stops getting it; a link's answer may be kept until the link
/// expires, as the link would have worked until then anyway.
fn cache_control(link_expires: Option<i64>) -> String {
    match link_expires {
        None => "private, no-cache".to_owned(),
        Some(exp) => {
            let left = (exp - Timestamp::now().millis() / 1000).max(0);
            format!("private, max-age={left}, immutable")
        }
    }
}

/// The headers that keep a download from running as anything in the browser: the stored type
/// (from the allow-list, never HTML), `nosniff` so the browser believes it, a sandboxing CSP
/// should it be opened as a page anyway, and `Content-Disposition: attachment` for everything
/// but images (a PDF or text file is saved, not rendered on this origin).
fn safe_headers(headers: &mut HeaderMap, attachment: &Attachment) {
    let content_type = if attachment.content_type == "text/plain" {
        "text/plain; charset=utf-8".to_owned()
    } else {
        attachment.content_type.clone()
    };
    headers.insert(header::CONTENT_TYPE, value(&content_type));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    let disposition = if attachment.is_image() {
        "inline"
    } else {
        "attachment"
    };
    headers.insert(
        header::CONTENT_DISPOSITION,
        value(&content_disposition(
            disposition,
            attachment.name.as_deref(),
        )),
    );
}

/// `attachment; filename="cat.png"; filename*=UTF-8''cat.png` (RFC 6266): an ASCII fallback
/// with anything unsafe in a quoted string replaced, and the name itself percent-encoded.
fn content_disposition(disposition: &str, name: Option<&str>) -> String {
    let Some(name) = name else {
        return disposition.to_owned();
    };
    let fallback: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded: String = name
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    format!("{disposition}; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
}

/// What a `Range` header asks for, of a file of `size` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum RangeAnswer {
    /// No usable range (not bytes, several ranges, or malformed): the whole file, as RFC 9110
    /// allows.
    Whole,
    Part(Range<u64>),
    /// Starts past the end.
    Unsatisfiable,
}

fn parse_range(header: &str, size: u64) -> RangeAnswer {
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return RangeAnswer::Whole;
    };
    if spec.contains(',') {
        return RangeAnswer::Whole;
    }
    let Some((start, end)) = spec.trim().split_once('-') else {
        return RangeAnswer::Whole;
    };
    let number = |s: &str| s.trim().parse::<u64>().ok();
    let range = match (start.trim().is_empty(), end.trim().is_empty()) {
        // The last `n` bytes.
        (true, false) => match number(end) {
            Some(0) => return RangeAnswer::Unsatisfiable,
            Some(n) => size.saturating_sub(n)..size,
            None => return RangeAnswer::Whole,
        },
        (false, true) => match number(start) {
            Some(s) => s..size,
            None => return RangeAnswer::Whole,
        },
        (false, false) => match (number(start), number(end)) {
            (Some(s), Some(e)) if s <= e => s..(e.saturating_add(1)).min(size),
            _ => return RangeAnswer::Whole,
        },
        (true, true) => return RangeAnswer::Whole,
    };
    if range.start >= size {
        RangeAnswer::Unsatisfiable
    } else {
        RangeAnswer::Part(range)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_read_as_rfc_9110_says() {
        use RangeAnswer::*;
        assert_eq!(parse_range("bytes=0-9", 100), Part(0..10));
        assert_eq!(parse_range("bytes=90-", 100), Part(90..100));
        assert_eq!(parse_range("bytes=-10", 100), Part(90..100));
        assert_eq!(parse_range("bytes=-1000", 100), Part(0..100));
        assert_eq!(parse_range("bytes=50-1000", 100), Part(50..100));
        assert_eq!(parse_range("bytes=100-", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=5-1", 100), Whole);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), Whole);
        assert_eq!(parse_range("items=0-1", 100), Whole);
        assert_eq!(parse_range("bytes=x-y", 100), Whole);
    }

    #[test]
    fn file_names_are_quoted_safely() {
        assert_eq!(content_disposition("inline", None), "inline");
        assert_eq!(
            content_disposition("attachment", Some("a \"b\".pdf")),
            "attachment; filename=\"a _b_.pdf\"; filename*=UTF-8''a%20%22b%22.pdf"
        );
        assert_eq!(
            content_disposition("attachment", Some("é.txt")),
            "attachment; filename=\"_.txt\"; filename*=UTF-8''%C3%A9.txt"
        );
    }
}
