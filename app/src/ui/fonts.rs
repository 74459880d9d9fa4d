//! Japanese text everywhere: the bundled IPAexGothic (IPA Font License v1.0, see
//! `app/assets/fonts/`) is compiled into the binary and put first in both the
//! proportional and the monospace family, so no system font is needed.

use egui::{FontData, FontDefinitions, FontFamily};
use std::sync::Arc;

/// The font file, compiled in.
pub const IPAEX_GOTHIC: &[u8] = include_bytes!("../../assets/fonts/ipaexg.ttf");

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

/// Installs the fonts and the tablet style (larger text, finger-sized targets).
pub fn install(ctx: &egui::Context) {
    ctx.set_fonts(definitions());
    ctx.all_styles_mut(|style| {
        use egui::{FontId, TextStyle};
        style.text_styles = [
            (TextStyle::Heading, FontId::proportional(26.0)),
            (TextStyle::Body, FontId::proportional(18.0)),
            (TextStyle::Button, FontId::proportional(18.0)),
            (TextStyle::Small, FontId::proportional(14.0)),
            (TextStyle::Monospace, FontId::monospace(16.0)),
        ]
        .into();
        style.spacing.interact_size = egui::vec2(48.0, 40.0);
        style.spacing.button_padding = egui::vec2(12.0, 8.0);
        style.spacing.item_spacing = egui::vec2(10.0, 8.0);
    });
}
