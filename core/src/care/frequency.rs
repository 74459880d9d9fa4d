//! Frequencies stated in 特記事項 against the choice of the items the 認定調査員テキスト
//! defines by frequency: 3-8 徘徊, 3-9 外出すると戻れない, 第4群 (4-1 … 4-15) and 5-4
//! 集団への不適応 (care-domain reference §1.4: 有無 items about behaviour, observed over
//! about the past month). The text picks the option by how often the behaviour occurs:
//!
//! | option | frequency |
//! | --- | --- |
//! | 3 ある | at least once a week |
//! | 2 ときどきある | at least once a month, less than once a week |
//! | 1 ない | less than once a month (or not at all) |
//!
//! [`band_of`] reads the frequencies a note states (週1回, 週に2〜3回, 月2回, 月に1回, 毎日,
//! ほぼ毎日, 毎晩, 年に数回, 2週に1回, 隔日, …; ASCII or full-width digits and the kanji
//! numerals 一…十) and returns the highest one. A phrase whose range spans two bands
//! (月に3〜5回) or that gives no number (時々, たまに) decides nothing. The check built on
//! it is a soft warning: a note may mention the frequency of something else.

use regex::Regex;
use std::sync::OnceLock;
use unicode_normalization::UnicodeNormalization;

/// How often a behaviour occurs, in the bands of the text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Band {
    /// Less than once a month: 1 ない.
    Rare,
    /// At least once a month, less than once a week: 2 ときどきある.
    Monthly,
    /// At least once a week: 3 ある.
    Weekly,
}

impl Band {
    /// The option code the text prescribes for this band.
    pub fn option(self) -> i64 {
        match self {
            Band::Rare => 1,
            Band::Monthly => 2,
            Band::Weekly => 3,
        }
    }

    /// The band the text prescribes for an option code (1–3), if any.
    pub fn of_option(code: i64) -> Option<Band> {
        match code {
            1 => Some(Band::Rare),
            2 => Some(Band::Monthly),
            3 => Some(Band::Weekly),
            _ => None,
        }
    }

    /// The definition, in Japanese, as shown in warnings.
    pub fn definition(self) -> &'static str {
        match self {
            Band::Rare => "月1回未満",
            Band::Monthly => "月1回以上週1回未満",
            Band::Weekly => "週1回以上",
        }
    }
}

/// The items whose options the text defines by frequency.
pub fn is_frequency_item(key: &str) -> bool {
    matches!(key, "3-8" | "3-9" | "5-4")
        || key
            .strip_prefix("4-")
            .and_then(|n| n.parse::<u8>().ok())
            .is_some_and(|n| (1..=15).contains(&n))
}

/// Days in a month, weeks in a month: the conversion of every rate to times a month.
const DAYS_PER_MONTH: f64 = 30.0;
const WEEKS_PER_MONTH: f64 = 30.0 / 7.0;

fn band_of_rate(per_month: f64) -> Band {
    // 週1回 is 30/7 ≈ 4.3 a month; 月4回 is read as about once a week.
    if per_month >= 4.0 {
        Band::Weekly
    } else if per_month >= 1.0 {
        Band::Monthly
    } else {
        Band::Rare
    }
}

/// NFKC (full-width digits and signs to ASCII), then the kanji numerals 一…九 and 十
/// (as in 十日) to digits. 数 ("several") is kept; the patterns read it as 2–5.
fn normalise(text: &str) -> String {
    let nfkc: String = text.nfkc().collect();
    let mut out = String::with_capacity(nfkc.len());
    for c in nfkc.chars() {
        match "一二三四五六七八九".find(c) {
            Some(i) => out.push_str(&(i / '一'.len_utf8() + 1).to_string()),
            None if c == '十' => out.push_str("10"),
            None => out.push(c),
        }
    }
    out
}

/// A number or a range ("2〜3", "2、3", "2-3", "2から3"), or 数 (2–5), captured as
/// `{tag}a` and `{tag}b`.
fn num(tag: &str) -> String {
    format!(r"(?P<{tag}a>\d+|数)(?:\s*(?:~|〜|、|,|・|-|から|ないし)\s*(?P<{tag}b>\d+))?")
}

struct Patterns {
    /// 毎日, ほぼ毎日, 毎晩, 毎朝, 毎夕, 毎夜, 連日, 毎週, 隔日, 1日おき: at least weekly.
    weekly: Regex,
    /// 毎月, 隔週: monthly.
    monthly: Regex,
    /// 半年に1回: rare.
    rare: Regex,
    /// A count over a period: (N)日に R回, (N)週(間)に R回|日, N か月に R回, 月に R回,
    /// (N)年に R回, each optionally followed by 未満.
    rate: Regex,
}

fn patterns() -> Option<&'static Patterns> {
    static P: OnceLock<Option<Patterns>> = OnceLock::new();
    P.get_or_init(|| {
        let unit = r"(?:回|度)";
        let per = r"\s*(?:に|で|の間に)?\s*";
        let (d, w, m, o, y) = (num("d"), num("w"), num("m"), num("o"), num("y"));
        let rate = format!(
            r"(?:(?P<dn>\d+|数)?\s*日{per}{d}\s*{unit}|(?P<wn>\d+|数)?\s*週(?:間)?{per}{w}\s*(?:{unit}|日)|(?P<mn>\d+|数)\s*(?:か|ヵ|カ|ヶ|ケ|箇)\s*月(?:間)?{per}{m}\s*{unit}|(?:ひと月|月){per}{o}\s*{unit}|(?P<yn>\d+|数)?\s*年(?:間)?{per}{y}\s*{unit})(?P<below>\s*(?:程度|くらい|ぐらい|ほど)?\s*未満)?"
        );
        Some(Patterns {
            weekly: Regex::new(r"毎日|毎晩|毎朝|毎夕|毎夜|連日|毎週|隔日|[12]\s*日\s*おき").ok()?,
            monthly: Regex::new("毎月|隔週").ok()?,
            rare: Regex::new(r"半年\s*(?:に|で)?\s*1\s*(?:回|度)").ok()?,
            rate: Regex::new(&rate).ok()?,
        })
    })
    .as_ref()
}

/// Bounds of a number or range: 数 is 2–5; a range must not run backwards.
fn bounds(low: &str, high: Option<&str>) -> Option<(f64, f64)> {
    let (a, b) = if low == "数" {
        (2.0, 5.0)
    } else {
        let a: f64 = low.parse().ok()?;
        (a, a)
    };
    match high {
        Some(h) => {
            let h: f64 = h.parse().ok()?;
            (h >= a).then_some((a, h))
        }
        None => Some((a, b)),
    }
}

/// The highest frequency band the text states, if it states one unambiguously.
pub fn band_of(text: &str) -> Option<Band> {
    let p = patterns()?;
    let text = normalise(text);
    let mut best: Option<Band> = None;
    let mut note = |b: Band| best = Some(best.map_or(b, |x| x.max(b)));
    if p.weekly.is_match(&text) {
        note(Band::Weekly);
    }
    if p.monthly.is_match(&text) {
        note(Band::Monthly);
    }
    if p.rare.is_match(&text) {
        note(Band::Rare);
    }
    for c in p.rate.captures_iter(&text) {
        let s = |name: &str| c.name(name).map(|m| m.as_str());
        // The alternative that matched: its count tag, the period's own count and the
        // length of one period in months.
        let (tag, period_n, months) = if s("da").is_some() {
            ("d", s("dn").unwrap_or("1"), 1.0 / DAYS_PER_MONTH)
        } else if s("wa").is_some() {
            ("w", s("wn").unwrap_or("1"), 1.0 / WEEKS_PER_MONTH)
        } else if s("ma").is_some() {
            ("m", s("mn").unwrap_or("1"), 1.0)
        } else if s("oa").is_some() {
            ("o", "1", 1.0)
        } else {
            ("y", s("yn").unwrap_or("1"), 12.0)
        };
        let (Some((p_lo, p_hi)), Some(a)) = (bounds(period_n, None), s(&format!("{tag}a"))) else {
            continue;
        };
        let Some((n_lo, n_hi)) = bounds(a, s(&format!("{tag}b"))) else {
            continue;
        };
        if p_lo <= 0.0 {
            continue;
        }
        // Lowest and highest rate a month the phrase allows.
        let (r_lo, r_hi) = (n_lo / (p_hi * months), n_hi / (p_lo * months));
        if s("below").is_some() {
            // 「月1回未満」 is less than monthly; other 「…未満」 leave two bands open.
            if r_hi <= 1.0 {
                note(Band::Rare);
            }
            continue;
        }
        let (lo, hi) = (band_of_rate(r_lo), band_of_rate(r_hi));
        if lo == hi {
            note(lo);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numerals_are_normalised() {
        assert_eq!(normalise("週２、三回"), "週2、3回");
        assert_eq!(normalise("十日に一度"), "10日に1度");
    }

    #[test]
    fn items() {
        for k in ["3-8", "3-9", "4-1", "4-12", "4-15", "5-4"] {
            assert!(is_frequency_item(k), "{k}");
        }
        for k in ["3-7", "4-16", "4-0", "5-3", "2-12", "4-", "4-x"] {
            assert!(!is_frequency_item(k), "{k}");
        }
    }
}
