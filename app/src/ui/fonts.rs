//! Japanese text everywhere: the bundled IPAexGothic (IPA Font License v1.0, see
//! `app/assets/fonts/`) is compiled into the binary and put first in both the
//! proportional and the monospace family, so no system font is needed.

use egui::{FontData, FontDefinitions, FontFamily};
use std::sync::Arc;

/// The font file, compiled in (once, shared with the PDFs).
pub const IPAEX_GOTHIC: &[u8] = crate::office::FONT;

const NAME: &str = "IPAexGothic";

/// egui's default fonts with IPAexGothic first in every family (egui's own fonts stay as
/// fallbacks for symbols IPAexGothic lacks).
pub fn definitions() -> FontDefinitions {
    let mut defs = FontDefinitions::default();
    defs.font_data.insert(
        NAME.to_owned(),
        Arc::new(FontData::from_static(IPAEX_GOTHIC)),
    );
    for family in [FontFamily::Proportional, FontFamily::Monospace] {
        defs.families
            .entry(family)
            .or_default()
            .insert(0, NAME.to_owned());
    }
    defs
}

/// Installs the fonts and the default tablet style (light screen, medium text,
/// finger-sized targets); the device's own 表示設定 are applied over it once read.
pub fn install(ctx: &egui::Context) {
    ctx.set_fonts(definitions());
    super::display::DisplaySettings::default().apply(ctx);
}
