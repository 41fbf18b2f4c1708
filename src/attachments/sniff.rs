//! What an upload is, read from its first bytes: the uploader's `Content-Type` is a claim, the
//! bytes are the fact. Pure functions.

/// How many bytes are read before deciding (and before anything is stored): enough for every
/// signature, and for the dimensions in an image's header (a JPEG's come after its EXIF block,
/// which is at most 64 KiB).
pub const SNIFF_BYTES: usize = 64 * 1024;

/// Images with more pixels than this are refused: a client laying one out would have to decode
/// it, and a small file can claim a huge canvas.
pub const MAX_PIXELS: u64 = 100_000_000;

/// The types served, all of them safe to show: no HTML, no SVG (which carries script), nothing
/// a browser runs.
pub const ALLOWED: [&str; 6] = [
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "application/pdf",
    "text/plain",
];

/// What the bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sniffed {
    pub content_type: &'static str,
    pub width: Option<u32>,
    pub height: Option<u32>,
}

/// Decides what `head` (the first [`SNIFF_BYTES`] of an upload, or all of it when `complete`)
/// is, against the allow-list, and checks it against what the uploader `declared`. `Err` says
/// why not, for the uploader.
pub fn sniff(head: &[u8], complete: bool, declared: Option<&str>) -> Result<Sniffed, String> {
    if head.is_empty() {
        return Err("the file is empty".into());
    }
    let sniffed = match infer::get(head) {
        Some(kind) => {
            let mime = kind.mime_type();
            let Some(allowed) = ALLOWED.iter().find(|a| **a == mime) else {
                return Err(format!(
                    "files of type {mime} are not accepted (accepted: {})",
                    ALLOWED.join(", ")
                ));
            };
            allowed
        }
        None if looks_like_markup(head) => {
            return Err("markup (HTML, SVG, XML) is not accepted".into());
        }
        None if is_plain_text(head, complete) => "text/plain",
        None => {
            return Err(format!(
                "the file's type is not recognised (accepted: {})",
                ALLOWED.join(", ")
            ));
        }
    };
    if let Some(declared) = declared.map(essence)
        && !agrees(&declared, sniffed)
    {
        return Err(format!(
            "the file was sent as {declared}, but its content is {sniffed}"
        ));
    }
    let (width, height) = if sniffed.starts_with("image/") {
        // The header alone, no decoding: `imagesize` reads each format's dimension fields,
        // which is all that is wanted here (a decoder would be a large attack surface).
        match imagesize::blob_size(head) {
            Ok(size) => {
                let (w, h) = (size.width as u64, size.height as u64);
                if w == 0 || h == 0 {
                    return Err("the image has no pixels".into());
                }
                if w.saturating_mul(h) > MAX_PIXELS {
                    return Err(format!(
                        "the image is {w}×{h}: at most {MAX_PIXELS} pixels are accepted"
                    ));
                }
                (u32::try_from(w).ok(), u32::try_from(h).ok())
            }
            // Its dimensions lie past what was read: shown without them.
            Err(_) => (None, None),
        }
    } else {
        (None, None)
    };
    Ok(Sniffed {
        content_type: sniffed,
        width,
        height,
    })
}

/// A declared type without parameters, in lower case (`Text/Plain; charset=utf-8` is
/// `text/plain`).
fn essence(declared: &str) -> String {
    declared
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// Whether a declared type is consistent with what the bytes are. No claim (`octet-stream`,
/// what browsers send for an unknown extension) is; any text type is for plain text (`.csv`,
/// `.log`); `image/jpg` is `image/jpeg`'s common misspelling.
fn agrees(declared: &str, sniffed: &str) -> bool {
    declared.is_empty()
        || declared == "application/octet-stream"
        || declared == sniffed
        || (sniffed == "text/plain" && declared.starts_with("text/") && declared != "text/html")
        || (sniffed == "image/jpeg" && declared == "image/jpg")
}

/// Text that a browser would render as a page or an image with script in it, were it ever
/// served as what it is (it never is: text goes out as `text/plain` with `nosniff`). `infer`
/// knows HTML and XML by their usual openings; this catches the rest (a bare `<svg>`).
fn looks_like_markup(head: &[u8]) -> bool {
    let start: Vec<u8> = head
        .iter()
        .skip_while(|b| b.is_ascii_whitespace())
        .take(16)
        .map(u8::to_ascii_lowercase)
        .collect();
    [
        &b"<svg"[..],
        b"<html",
        b"<!doctype",
        b"<?xml",
        b"<script",
        b"<head",
        b"<body",
        b"<iframe",
    ]
    .iter()
    .any(|tag| start.starts_with(tag))
}

/// UTF-8 (a character cut at the end of an incomplete head is fine) without control characters
/// other than tab, newline, carriage return and form feed: text a person wrote, not a binary
/// format `infer` doesn't know.
fn is_plain_text(head: &[u8], complete: bool) -> bool {
    let text = match std::str::from_utf8(head) {
        Ok(text) => text,
        // Only a character cut by the end of what was read, and only if more follows.
        Err(e) if !complete && e.error_len().is_none() => {
            std::str::from_utf8(&head[..e.valid_up_to()]).unwrap_or_default()
        }
        Err(_) => return false,
    };
    text.chars()
        .all(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r' | '\u{c}'))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 3×2 PNG's signature and header.
    pub const PNG_3X2: &[u8] = &[
        0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13, b'I', b'H', b'D', b'R', 0, 0,
        0, 3, 0, 0, 0, 2, 8, 6, 0, 0, 0, 0x9a, 0x8c, 0x5e, 0xbd,
    ];

    #[test]
    fn images_are_recognised_with_their_dimensions() {
        let s = sniff(PNG_3X2, true, Some("image/png")).unwrap();
        assert_eq!(
            (s.content_type, s.width, s.height),
            ("image/png", Some(3), Some(2))
        );
        // No claim, or octet-stream: the bytes decide.
        assert_eq!(
            sniff(PNG_3X2, true, None).unwrap().content_type,
            "image/png"
        );
        assert!(sniff(PNG_3X2, true, Some("application/octet-stream")).is_ok());
    }

    #[test]
    fn disguises_are_refused() {
        let e = sniff(PNG_3X2, true, Some("text/plain")).unwrap_err();
        assert!(e.contains("image/png"), "{e}");
        let html = b"<!DOCTYPE html><html><script>alert(1)</script></html>";
        assert!(sniff(html, true, Some("image/png")).is_err());
        assert!(sniff(html, true, None).is_err(), "HTML is never accepted");
        assert!(sniff(b"<svg xmlns='http://www.w3.org/2000/svg'/>", true, None).is_err());
        assert!(sniff(b"MZ\x90\x00\x03\x00\x00\x00", true, Some("image/png")).is_err());
        assert!(sniff(b"hello", true, Some("image/png")).is_err());
        assert!(sniff(b"\x00\x01\x02binary", true, None).is_err());
        assert!(sniff(b"", true, None).is_err());
    }

    #[test]
    fn text_is_plain_text() {
        let s = sniff(
            "héllo\nwörld\t!".as_bytes(),
            true,
            Some("text/plain; charset=utf-8"),
        );
        assert_eq!(s.unwrap().content_type, "text/plain");
        assert!(sniff(b"a,b\n1,2\n", true, Some("text/csv")).is_ok());
        // A character cut at the end of the head, with more to come, is fine; at the end of the
        // file it is not UTF-8.
        let cut = &"héllo".as_bytes()[..2];
        assert!(sniff(cut, false, None).is_ok());
        assert!(sniff(cut, true, None).is_err());
    }

    #[test]
    fn huge_canvases_are_refused() {
        let mut png = PNG_3X2.to_vec();
        png[16..20].copy_from_slice(&100_000u32.to_be_bytes());
        png[20..24].copy_from_slice(&100_000u32.to_be_bytes());
        let e = sniff(&png, true, None).unwrap_err();
        assert!(e.contains("pixels"), "{e}");
    }
}
