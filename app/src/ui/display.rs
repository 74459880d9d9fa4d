//! Display settings (表示設定): a light or dark screen and three text sizes, kept on the
//! device in `display.toml` in the data directory (no personal data: two words).
//!
//! Light is the default: a tablet is read at a kitchen table in daylight. Every size keeps
//! touch targets at least [`MIN_TOUCH`] points high, the size WCAG 2.2 (2.5.5) and the
//! platform guidelines ask for.

use std::path::Path;

use egui::{FontId, TextStyle};
use serde::{Deserialize, Serialize};

/// The file in the data directory.
pub const FILE: &str = "display.toml";
/// Largest display file read (a real one is about 40 bytes).
const MAX_FILE_BYTES: u64 = 4096;
/// Smallest height of anything a finger taps, in points.
pub const MIN_TOUCH: f32 = 44.0;

/// Light or dark screen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Theme {
    /// Dark text on a light background (default).
    #[default]
    Light,
    /// Light text on a dark background.
    Dark,
}

/// Text size.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TextSize {
    /// 小.
    Small,
    /// 中 (default).
    #[default]
    Medium,
    /// 大.
    Large,
}

impl TextSize {
    /// Body text size in points.
    fn body(self) -> f32 {
        match self {
            TextSize::Small => 16.0,
            TextSize::Medium => 18.0,
            TextSize::Large => 22.0,
        }
    }
}

/// What the screen looks like on this device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DisplaySettings {
    /// Light or dark.
    #[serde(default)]
    pub theme: Theme,
    /// Text size.
    #[serde(default)]
    pub text: TextSize,
}

impl DisplaySettings {
    /// Applies the theme, the text sizes and the touch-target sizes to every style.
    pub fn apply(self, ctx: &egui::Context) {
        ctx.set_theme(match self.theme {
            Theme::Light => egui::Theme::Light,
            Theme::Dark => egui::Theme::Dark,
        });
        let body = self.text.body();
        ctx.all_styles_mut(|style| {
            style.text_styles = [
                (TextStyle::Heading, FontId::proportional(body * 1.45)),
                (TextStyle::Body, FontId::proportional(body)),
                (TextStyle::Button, FontId::proportional(body)),
                (TextStyle::Small, FontId::proportional(body * 0.8)),
                (TextStyle::Monospace, FontId::monospace(body * 0.9)),
            ]
            .into();
            style.spacing.interact_size = egui::vec2(48.0, MIN_TOUCH);
            style.spacing.button_padding = egui::vec2(12.0, 10.0);
            style.spacing.item_spacing = egui::vec2(10.0, 8.0);
        });
    }

    /// Reads the settings of a data directory; a missing, unreadable or foreign file gives
    /// the defaults (the file is only a preference, never worth refusing to start).
    pub fn load(data_dir: &Path) -> DisplaySettings {
        let path = data_dir.join(FILE);
        let text = match std::fs::metadata(&path) {
            Ok(m) if m.len() <= MAX_FILE_BYTES => std::fs::read_to_string(&path).ok(),
            Ok(_) => {
                tracing::warn!("display settings file too large; using the defaults");
                None
            }
            Err(_) => None,
        };
        text.and_then(|t| match toml::from_str(&t) {
            Ok(s) => Some(s),
            Err(_) => {
                tracing::warn!("display settings file not understood; using the defaults");
                None
            }
        })
        .unwrap_or_default()
    }

    /// Writes the settings into a data directory (temporary file, fsync, rename).
    pub fn save(self, data_dir: &Path) -> std::io::Result<()> {
        let text = toml::to_string(&self).map_err(std::io::Error::other)?;
        musubi_engine::store::write_durably(&data_dir.join(FILE), text.as_bytes())
    }

    /// The 表示 controls: screen brightness and text size. Returns whether anything changed.
    pub fn controls(&mut self, ui: &mut egui::Ui) -> bool {
        let before = *self;
        ui.horizontal(|ui| {
            ui.label("画面");
            ui.selectable_value(&mut self.theme, Theme::Light, "明るい");
            ui.selectable_value(&mut self.theme, Theme::Dark, "暗い");
        });
        ui.horizontal(|ui| {
            ui.label("文字の大きさ");
            ui.selectable_value(&mut self.text, TextSize::Small, "小");
            ui.selectable_value(&mut self.text, TextSize::Medium, "中");
            ui.selectable_value(&mut self.text, TextSize::Large, "大");
        });
        *self != before
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_bad_files_give_the_defaults() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            DisplaySettings::load(dir.path()),
            DisplaySettings::default()
        );
        let s = DisplaySettings {
            theme: Theme::Dark,
            text: TextSize::Large,
        };
        s.save(dir.path()).unwrap();
        assert_eq!(DisplaySettings::load(dir.path()), s);
        for bad in ["theme = 3", "colour = \"red\"", "\u{0}", &"x".repeat(5000)] {
            std::fs::write(dir.path().join(FILE), bad).unwrap();
            assert_eq!(
                DisplaySettings::load(dir.path()),
                DisplaySettings::default()
            );
        }
    }

    #[test]
    fn every_size_keeps_touch_targets_at_least_44_points() {
        for text in [TextSize::Small, TextSize::Medium, TextSize::Large] {
            let ctx = egui::Context::default();
            DisplaySettings {
                theme: Theme::Light,
                text,
            }
            .apply(&ctx);
            assert!(ctx.global_style().spacing.interact_size.y >= MIN_TOUCH);
            let body = ctx.global_style().text_styles[&TextStyle::Body].size;
            assert_eq!(body, text.body());
        }
    }
}
