//! Avatar uploads: any content type (multipart with any boundary, an image type, anything) and
//! any bytes → the image bytes or our documented error, never a panic; and whatever comes out,
//! the image check answers a format or none, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (u8, &[u8])| {
    let content_type = [
        "multipart/form-data; boundary=b0undary",
        "multipart/form-data; boundary=\"x y\"",
        "multipart/form-data",
        "image/png",
        "",
        "application/json",
    ][input.0 as usize % 6];
    let body = axum::body::Bytes::copy_from_slice(input.1);
    if let Ok(image) = futures::executor::block_on(wxlogin::routes::image_of(content_type, body)) {
        let _ = wxlogin::domain::ImageKind::sniff(&image);
    }
    let _ = wxlogin::domain::ImageKind::sniff(input.1);
});
