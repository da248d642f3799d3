//! The activation link as a QR code (the `qrcode` crate), as PNG (the `png` crate) and SVG.

use qrcode::{Color, EcLevel, QrCode};

/// Pixels per module in the PNG, and the quiet zone around the code (4 modules, ISO 18004).
const SCALE: usize = 8;
const QUIET: usize = 4;

fn code(text: &str) -> Result<QrCode, String> {
    // M: survives a smudged phone screen, and a 100-character URL stays at version 5 or so.
    QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M)
        .map_err(|e| format!("the link does not fit a QR code: {e}"))
}

/// An 8-bit greyscale PNG of `text`.
pub fn png(text: &str) -> Result<Vec<u8>, String> {
    let code = code(text)?;
    let modules = code.to_colors();
    let width = code.width();
    let side = (width + 2 * QUIET) * SCALE;
    let mut pixels = vec![255u8; side * side];
    for (i, c) in modules.iter().enumerate() {
        if *c != Color::Dark {
            continue;
        }
        let (mx, my) = (i % width + QUIET, i / width + QUIET);
        for y in my * SCALE..(my + 1) * SCALE {
            pixels[y * side + mx * SCALE..y * side + (mx + 1) * SCALE].fill(0);
        }
    }
    let mut out = Vec::new();
    let side32 = u32::try_from(side).map_err(|_| "QR image too large".to_string())?;
    let mut enc = png::Encoder::new(&mut out, side32, side32);
    enc.set_color(png::ColorType::Grayscale);
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc.write_header().map_err(|e| e.to_string())?;
    writer
        .write_image_data(&pixels)
        .map_err(|e| e.to_string())?;
    writer.finish().map_err(|e| e.to_string())?;
    Ok(out)
}

/// An SVG of `text`, with its quiet zone.
pub fn svg(text: &str) -> Result<String, String> {
    Ok(code(text)?
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(256, 256)
        .quiet_zone(true)
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_have_the_expected_shape() {
        let url =
            "https://hotdesk.example.com/provisioning/abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
        let p = png(url).unwrap();
        assert_eq!(&p[..8], b"\x89PNG\r\n\x1a\n");
        let s = svg(url).unwrap();
        assert!(s.starts_with("<?xml") && s.contains("<svg"), "{s}");
    }
}
