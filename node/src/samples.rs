//! Shared data standards of the Delta (the JSON Schemas in `schemas/datasets/`), deterministic
//! realistic sample-record generators for them, and the check-character algorithms of the unified
//! social credit code (GB 32100-2015) and the resident identity number (GB 11643-1999).
//!
//! Every generator is driven by a [`StdRng`] seeded with [`SeedableRng::seed_from_u64`], so the
//! same standard and seed always yield the same records. Dates are drawn relative to a fixed
//! reference day ([`REFERENCE_DATE`]) rather than the clock, for the same reason.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

/// Version shared by every data standard in this module.
pub const STANDARD_VERSION: &str = "1.0.0";

/// The day generated records are drawn up to (`YYYY-MM-DD`); no record is dated later.
pub const REFERENCE_DATE: &str = "2025-06-30";

/// Summary of one shared data standard (one JSON Schema file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StandardInfo {
    /// Stable identifier, e.g. `enterprise-licence`; the schema's `$id` ends in `<id>/<version>`.
    pub id: &'static str,
    /// Semantic version of the standard.
    pub version: &'static str,
    /// Chinese title.
    pub title_zh: &'static str,
    /// English title.
    pub title_en: &'static str,
    /// File name under `schemas/datasets/`.
    pub file_name: &'static str,
    /// Top-level fields holding personal data (marked `x-personal-data` in the schema); a
    /// provider masks these before sharing.
    pub personal_fields: &'static [&'static str],
}

/// All shared data standards, in a stable order.
pub const STANDARDS: &[StandardInfo] = &[
    StandardInfo {
        id: "enterprise-licence",
        version: STANDARD_VERSION,
        title_zh: "营业执照",
        title_en: "Enterprise business licence",
        file_name: "enterprise-licence.schema.json",
        personal_fields: &["legal_representative", "legal_representative_id_number"],
    },
    StandardInfo {
        id: "social-insurance-contribution",
        version: STANDARD_VERSION,
        title_zh: "社会保险缴费记录",
        title_en: "Social insurance contribution record",
        file_name: "social-insurance-contribution.schema.json",
        personal_fields: &["id_number", "name"],
    },
    StandardInfo {
        id: "medical-insurance-settlement",
        version: STANDARD_VERSION,
        title_zh: "异地就医直接结算",
        title_en: "Cross-region medical insurance direct settlement",
        file_name: "medical-insurance-settlement.schema.json",
        personal_fields: &["insured_id_number", "insured_name"],
    },
    StandardInfo {
        id: "housing-provident-fund",
        version: STANDARD_VERSION,
        title_zh: "住房公积金缴存记录",
        title_en: "Housing provident fund deposit record",
        file_name: "housing-provident-fund.schema.json",
        personal_fields: &["id_number", "name", "mobile_phone", "account_number"],
    },
    StandardInfo {
        id: "electronic-licence-index",
        version: STANDARD_VERSION,
        title_zh: "电子证照目录索引",
        title_en: "Electronic licence catalogue index entry",
        file_name: "electronic-licence-index.schema.json",
        personal_fields: &["holder_name", "holder_id"],
    },
    StandardInfo {
        id: "elderly-care-subsidy",
        version: STANDARD_VERSION,
        title_zh: "异地养老服务补贴",
        title_en: "Cross-region elderly care subsidy",
        file_name: "elderly-care-subsidy.schema.json",
        personal_fields: &[
            "elder_id_number",
            "elder_name",
            "birth_date",
            "contact_name",
            "contact_phone",
        ],
    },
];

/// Errors of this module.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SampleError {
    /// No data standard has this id.
    #[error("unknown data standard `{0}`")]
    UnknownStandard(String),
}

/// The [`StandardInfo`] of the standard `id`, if there is one.
pub fn standard(id: &str) -> Option<&'static StandardInfo> {
    STANDARDS.iter().find(|s| s.id == id)
}

/// The JSON Schema text of the standard `id`, compiled into the binary.
pub fn schema_json(id: &str) -> Option<&'static str> {
    Some(match id {
        "enterprise-licence" => include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../schemas/datasets/enterprise-licence.schema.json"
        )),
        "social-insurance-contribution" => include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../schemas/datasets/social-insurance-contribution.schema.json"
        )),
        "medical-insurance-settlement" => include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../schemas/datasets/medical-insurance-settlement.schema.json"
        )),
        "housing-provident-fund" => include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../schemas/datasets/housing-provident-fund.schema.json"
        )),
        "electronic-licence-index" => include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../schemas/datasets/electronic-licence-index.schema.json"
        )),
        "elderly-care-subsidy" => include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../schemas/datasets/elderly-care-subsidy.schema.json"
        )),
        _ => return None,
    })
}

/// `count` sample records of the standard `id`, the same ones for the same `seed`.
pub fn generate(id: &str, count: usize, seed: u64) -> Result<Vec<Value>, SampleError> {
    Ok(records(id, seed)?.take(count).collect())
}

/// An endless stream of sample records of the standard `id`; its first `n` items are what
/// [`generate`] returns for `n`.
pub fn records(
    id: &str,
    seed: u64,
) -> Result<impl Iterator<Item = Value> + Send + use<>, SampleError> {
    let kind = Kind::from_id(id).ok_or_else(|| SampleError::UnknownStandard(id.to_owned()))?;
    Ok(Records {
        kind,
        rng: StdRng::seed_from_u64(seed),
        index: 0,
    })
}

// ---------------------------------------------------------------------------------------------
// Check characters
// ---------------------------------------------------------------------------------------------

/// The 31 characters of the GB 32100-2015 alphabet, in value order (no I, O, S, V, Z).
const USCC_ALPHABET: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
/// GB 32100-2015 weights of positions 1..=17 (3^(i-1) mod 31).
const USCC_WEIGHTS: [u32; 17] = [
    1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28,
];
/// ISO 7064 MOD 11-2 weights of positions 1..=17 (2^(18-i) mod 11).
const ID_WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
/// ISO 7064 MOD 11-2 check characters, indexed by the weighted sum mod 11.
const ID_CHECK: &[u8; 11] = b"10X98765432";
/// GB 11714-1997 organization-code weights of positions 1..=8.
const ORG_WEIGHTS: [u32; 8] = [3, 7, 9, 10, 5, 8, 4, 2];

fn uscc_value(c: u8) -> Option<u32> {
    USCC_ALPHABET
        .iter()
        .position(|&a| a == c)
        .and_then(|p| u32::try_from(p).ok())
}

/// The GB 32100-2015 check character of the first 17 characters of a unified social credit
/// code, or `None` if `first17` is not 17 characters of the code's alphabet.
pub fn uscc_check_char(first17: &str) -> Option<char> {
    let bytes = first17.as_bytes();
    if bytes.len() != 17 {
        return None;
    }
    let mut sum = 0u32;
    for (&b, w) in bytes.iter().zip(USCC_WEIGHTS) {
        sum += uscc_value(b)? * w;
    }
    let check = (31 - sum % 31) % 31;
    USCC_ALPHABET
        .get(usize::try_from(check).ok()?)
        .map(|&b| char::from(b))
}

/// Whether `code` is a well-formed unified social credit code: 18 characters of the GB
/// 32100-2015 alphabet, a 6-digit region code in positions 3 to 8, and the right check character.
pub fn is_valid_uscc(code: &str) -> bool {
    let bytes = code.as_bytes();
    if bytes.len() != 18
        || !bytes
            .get(2..8)
            .is_some_and(|r| r.iter().all(u8::is_ascii_digit))
    {
        return false;
    }
    match (code.get(..17), bytes.get(17)) {
        (Some(first17), Some(&last)) => uscc_check_char(first17) == Some(char::from(last)),
        _ => false,
    }
}

/// The ISO 7064 MOD 11-2 check character (`0`–`9` or `X`) of the first 17 digits of a resident
/// identity number (GB 11643-1999), or `None` if `first17` is not 17 ASCII digits.
pub fn id_card_check_char(first17: &str) -> Option<char> {
    let bytes = first17.as_bytes();
    if bytes.len() != 17 {
        return None;
    }
    let mut sum = 0u32;
    for (&b, w) in bytes.iter().zip(ID_WEIGHTS) {
        if !b.is_ascii_digit() {
            return None;
        }
        sum += u32::from(b - b'0') * w;
    }
    ID_CHECK
        .get(usize::try_from(sum % 11).ok()?)
        .map(|&b| char::from(b))
}

/// Whether `s` is a well-formed 18-character resident identity number: a region code not
/// starting with 0, a real birth date (years 1800–2099), a sequence code and the right check
/// character (upper-case `X` for ten).
pub fn is_valid_id_card(s: &str) -> bool {
    let bytes = s.as_bytes();
    if bytes.len() != 18 || bytes.first() == Some(&b'0') {
        return false;
    }
    let Some(first17) = s.get(..17) else {
        return false;
    };
    let Some(check) = id_card_check_char(first17) else {
        return false;
    };
    if bytes.get(17).map(|&b| char::from(b)) != Some(check) {
        return false;
    }
    let field = |r: std::ops::Range<usize>| s.get(r).and_then(|t| t.parse::<u32>().ok());
    match (field(6..10), field(10..12), field(12..14)) {
        (Some(y), Some(m), Some(d)) => {
            (1800..=2099).contains(&y)
                && (1..=12).contains(&m)
                && (1..=days_in_month(i64::from(y), m)).contains(&d)
        }
        _ => false,
    }
}

/// GB 11714-1997 check character of an 8-character organization-code body (digits and
/// upper-case letters), as embedded in positions 9 to 17 of a unified social credit code.
fn org_code_check_char(body8: &str) -> Option<char> {
    if body8.len() != 8 {
        return None;
    }
    let mut sum = 0u32;
    for (c, w) in body8.chars().zip(ORG_WEIGHTS) {
        if !(c.is_ascii_digit() || c.is_ascii_uppercase()) {
            return None;
        }
        sum += c.to_digit(36)? * w;
    }
    match 11 - sum % 11 {
        10 => Some('X'),
        11 => Some('0'),
        n => char::from_digit(n, 10),
    }
}

// ---------------------------------------------------------------------------------------------
// Dates
// ---------------------------------------------------------------------------------------------

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(y) => 29,
        2 => 28,
        _ => 0,
    }
}

/// A calendar day, stored as days since 1970-01-01 (proleptic Gregorian).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Date(i64);

impl Date {
    fn from_ymd(y: i64, m: u32, d: u32) -> Self {
        // H. Hinnant's days_from_civil.
        let y = if m <= 2 { y - 1 } else { y };
        let era = if y >= 0 { y } else { y - 399 } / 400;
        let yoe = y - era * 400;
        let m = i64::from(m);
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        Date(era * 146_097 + doe - 719_468)
    }

    fn ymd(self) -> (i64, u32, u32) {
        // H. Hinnant's civil_from_days.
        let z = self.0 + 719_468;
        let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        let y = yoe + era * 400 + i64::from(m <= 2);
        (
            y,
            u32::try_from(m).unwrap_or(1),
            u32::try_from(d).unwrap_or(1),
        )
    }

    fn year(self) -> i64 {
        self.ymd().0
    }

    fn add_days(self, n: i64) -> Self {
        Date(self.0 + n)
    }

    /// The same month and day `n` years later (29 February becomes 28 February).
    fn add_years(self, n: i64) -> Self {
        let (y, m, d) = self.ymd();
        let y = y + n;
        Date::from_ymd(y, m, d.min(days_in_month(y, m)))
    }

    /// `YYYY-MM-DD`.
    fn iso(self) -> String {
        let (y, m, d) = self.ymd();
        format!("{y:04}-{m:02}-{d:02}")
    }

    /// `YYYYMMDD`.
    fn compact(self) -> String {
        let (y, m, d) = self.ymd();
        format!("{y:04}{m:02}{d:02}")
    }
}

fn reference_date() -> Date {
    Date::from_ymd(2025, 6, 30)
}

/// A calendar month as a count of months since year 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Month(i64);

impl Month {
    fn new(y: i64, m: u32) -> Self {
        Month(y * 12 + i64::from(m) - 1)
    }

    fn first_day(self) -> Date {
        Date::from_ymd(
            self.0.div_euclid(12),
            u32::try_from(self.0.rem_euclid(12) + 1).unwrap_or(1),
            1,
        )
    }

    /// `YYYYMM`.
    fn compact(self) -> String {
        format!(
            "{:04}{:02}",
            self.0.div_euclid(12),
            self.0.rem_euclid(12) + 1
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Random helpers (panic-free: empty inputs and reversed ranges fall back to a default)
// ---------------------------------------------------------------------------------------------

fn pick<T: Copy + Default>(rng: &mut StdRng, items: &[T]) -> T {
    if items.is_empty() {
        return T::default();
    }
    items
        .get(rng.gen_range(0..items.len()))
        .copied()
        .unwrap_or_default()
}

fn weighted<T: Copy + Default>(rng: &mut StdRng, items: &[(T, u32)]) -> T {
    let total: u32 = items.iter().map(|(_, w)| w).sum();
    if total == 0 {
        return items.first().map(|(t, _)| *t).unwrap_or_default();
    }
    let mut roll = rng.gen_range(0..total);
    for &(t, w) in items {
        if roll < w {
            return t;
        }
        roll -= w;
    }
    items.last().map(|(t, _)| *t).unwrap_or_default()
}

/// Uniform in `lo..=hi`; `lo` if the range is empty.
fn between(rng: &mut StdRng, lo: i64, hi: i64) -> i64 {
    if lo >= hi { lo } else { rng.gen_range(lo..=hi) }
}

fn date_between(rng: &mut StdRng, lo: Date, hi: Date) -> Date {
    Date(between(rng, lo.0, hi.0))
}

fn month_between(rng: &mut StdRng, lo: Month, hi: Month) -> Month {
    Month(between(rng, lo.0, hi.0))
}

fn digits(rng: &mut StdRng, n: usize) -> String {
    (0..n)
        .map(|_| char::from(b'0' + rng.gen_range(0..10u8)))
        .collect()
}

/// Money from an amount in fen (cents): a JSON number with at most two decimals.
fn yuan(fen: i64) -> Value {
    #[allow(clippy::cast_precision_loss)]
    let v = fen as f64 / 100.0;
    json!(v)
}

/// `fen * basis_points / 10000`, rounded half up.
fn share(fen: i64, basis_points: i64) -> i64 {
    (fen * basis_points + 5_000) / 10_000
}

/// FNV-1a, for stable per-name codes.
fn fnv1a(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

// ---------------------------------------------------------------------------------------------
// Regions of the Delta (GB/T 2260): Shanghai and 40 prefecture-level cities of Jiangsu,
// Zhejiang and Anhui, with some of their county-level divisions.
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct District {
    code: &'static str,
    city: &'static str,
    name: &'static str,
}

const HUANGPU: District = District {
    code: "310101",
    city: "上海市",
    name: "黄浦区",
};

impl Default for District {
    fn default() -> Self {
        HUANGPU
    }
}

const fn dist(code: &'static str, city: &'static str, name: &'static str) -> District {
    District { code, city, name }
}

static DISTRICTS: &[District] = &[
    HUANGPU,
    dist("310104", "上海市", "徐汇区"),
    dist("310105", "上海市", "长宁区"),
    dist("310106", "上海市", "静安区"),
    dist("310107", "上海市", "普陀区"),
    dist("310109", "上海市", "虹口区"),
    dist("310110", "上海市", "杨浦区"),
    dist("310112", "上海市", "闵行区"),
    dist("310113", "上海市", "宝山区"),
    dist("310114", "上海市", "嘉定区"),
    dist("310115", "上海市", "浦东新区"),
    dist("310116", "上海市", "金山区"),
    dist("310117", "上海市", "松江区"),
    dist("310118", "上海市", "青浦区"),
    dist("310120", "上海市", "奉贤区"),
    dist("310151", "上海市", "崇明区"),
    dist("320102", "南京市", "玄武区"),
    dist("320104", "南京市", "秦淮区"),
    dist("320105", "南京市", "建邺区"),
    dist("320106", "南京市", "鼓楼区"),
    dist("320113", "南京市", "栖霞区"),
    dist("320115", "南京市", "江宁区"),
    dist("320211", "无锡市", "滨湖区"),
    dist("320213", "无锡市", "梁溪区"),
    dist("320214", "无锡市", "新吴区"),
    dist("320281", "无锡市", "江阴市"),
    dist("320302", "徐州市", "鼓楼区"),
    dist("320311", "徐州市", "泉山区"),
    dist("320402", "常州市", "天宁区"),
    dist("320411", "常州市", "新北区"),
    dist("320412", "常州市", "武进区"),
    dist("320505", "苏州市", "虎丘区"),
    dist("320506", "苏州市", "吴中区"),
    dist("320507", "苏州市", "相城区"),
    dist("320508", "苏州市", "姑苏区"),
    dist("320509", "苏州市", "吴江区"),
    dist("320581", "苏州市", "常熟市"),
    dist("320582", "苏州市", "张家港市"),
    dist("320583", "苏州市", "昆山市"),
    dist("320585", "苏州市", "太仓市"),
    dist("320612", "南通市", "通州区"),
    dist("320613", "南通市", "崇川区"),
    dist("320681", "南通市", "启东市"),
    dist("320703", "连云港市", "连云区"),
    dist("320707", "连云港市", "赣榆区"),
    dist("320803", "淮安市", "淮安区"),
    dist("320812", "淮安市", "清江浦区"),
    dist("320902", "盐城市", "亭湖区"),
    dist("320903", "盐城市", "盐都区"),
    dist("321002", "扬州市", "广陵区"),
    dist("321003", "扬州市", "邗江区"),
    dist("321102", "镇江市", "京口区"),
    dist("321111", "镇江市", "润州区"),
    dist("321202", "泰州市", "海陵区"),
    dist("321203", "泰州市", "高港区"),
    dist("321302", "宿迁市", "宿城区"),
    dist("321311", "宿迁市", "宿豫区"),
    dist("330102", "杭州市", "上城区"),
    dist("330105", "杭州市", "拱墅区"),
    dist("330106", "杭州市", "西湖区"),
    dist("330108", "杭州市", "滨江区"),
    dist("330109", "杭州市", "萧山区"),
    dist("330110", "杭州市", "余杭区"),
    dist("330203", "宁波市", "海曙区"),
    dist("330205", "宁波市", "江北区"),
    dist("330206", "宁波市", "北仑区"),
    dist("330212", "宁波市", "鄞州区"),
    dist("330302", "温州市", "鹿城区"),
    dist("330304", "温州市", "瓯海区"),
    dist("330381", "温州市", "瑞安市"),
    dist("330402", "嘉兴市", "南湖区"),
    dist("330411", "嘉兴市", "秀洲区"),
    dist("330421", "嘉兴市", "嘉善县"),
    dist("330502", "湖州市", "吴兴区"),
    dist("330503", "湖州市", "南浔区"),
    dist("330521", "湖州市", "德清县"),
    dist("330602", "绍兴市", "越城区"),
    dist("330603", "绍兴市", "柯桥区"),
    dist("330702", "金华市", "婺城区"),
    dist("330782", "金华市", "义乌市"),
    dist("330802", "衢州市", "柯城区"),
    dist("330902", "舟山市", "定海区"),
    dist("331002", "台州市", "椒江区"),
    dist("331004", "台州市", "路桥区"),
    dist("331102", "丽水市", "莲都区"),
    dist("340102", "合肥市", "瑶海区"),
    dist("340103", "合肥市", "庐阳区"),
    dist("340104", "合肥市", "蜀山区"),
    dist("340111", "合肥市", "包河区"),
    dist("340202", "芜湖市", "镜湖区"),
    dist("340207", "芜湖市", "鸠江区"),
    dist("340302", "蚌埠市", "龙子湖区"),
    dist("340303", "蚌埠市", "蚌山区"),
    dist("340403", "淮南市", "田家庵区"),
    dist("340503", "马鞍山市", "花山区"),
    dist("340504", "马鞍山市", "雨山区"),
    dist("340603", "淮北市", "相山区"),
    dist("340705", "铜陵市", "铜官区"),
    dist("340802", "安庆市", "迎江区"),
    dist("340803", "安庆市", "大观区"),
    dist("341002", "黄山市", "屯溪区"),
    dist("341102", "滁州市", "琅琊区"),
    dist("341202", "阜阳市", "颍州区"),
    dist("341302", "宿州市", "埇桥区"),
    dist("341502", "六安市", "金安区"),
    dist("341602", "亳州市", "谯城区"),
    dist("341702", "池州市", "贵池区"),
    dist("341802", "宣城市", "宣州区"),
];

/// County-level codes outside the Delta, for people born elsewhere.
static OTHER_REGIONS: &[&str] = &[
    "410105", // 郑州市金水区
    "420106", // 武汉市武昌区
    "510107", // 成都市武侯区
    "430102", // 长沙市芙蓉区
    "370102", // 济南市历下区
    "350102", // 福州市鼓楼区
    "360102", // 南昌市东湖区
    "110105", // 北京市朝阳区
];

impl District {
    fn province_prefix(&self) -> &'static str {
        self.code.get(..2).unwrap_or("31")
    }

    fn is_shanghai(&self) -> bool {
        self.province_prefix() == "31"
    }

    /// Prefecture-level code: `310000` for Shanghai, else the first four digits and `00`.
    fn city_code(&self) -> String {
        if self.is_shanghai() {
            "310000".to_owned()
        } else {
            format!("{}00", self.code.get(..4).unwrap_or("3101"))
        }
    }

    fn city_short(&self) -> &'static str {
        self.city.strip_suffix('市').unwrap_or(self.city)
    }

    fn province_name(&self) -> &'static str {
        match self.province_prefix() {
            "32" => "江苏省",
            "33" => "浙江省",
            "34" => "安徽省",
            _ => "",
        }
    }

    fn province_abbr(&self) -> &'static str {
        match self.province_prefix() {
            "32" => "苏",
            "33" => "浙",
            "34" => "皖",
            _ => "沪",
        }
    }

    /// The name a county-level authority goes by: `上海市黄浦区`, `苏州市姑苏区`, `江阴市`.
    fn locality(&self) -> String {
        if self.name.ends_with('市') || self.name.ends_with('县') {
            self.name.to_owned()
        } else {
            format!("{}{}", self.city, self.name)
        }
    }

    /// Address prefix: `江苏省苏州市姑苏区`.
    fn full_name(&self) -> String {
        format!("{}{}{}", self.province_name(), self.city, self.name)
    }

    fn same_city(&self, other: &District) -> bool {
        self.code.get(..4) == other.code.get(..4)
    }
}

fn any_district(rng: &mut StdRng) -> District {
    pick(rng, DISTRICTS)
}

fn district_where(rng: &mut StdRng, keep: impl Fn(&District) -> bool) -> District {
    let matching: Vec<District> = DISTRICTS.iter().copied().filter(|d| keep(d)).collect();
    if matching.is_empty() {
        any_district(rng)
    } else {
        pick(rng, &matching)
    }
}

fn district_by_code(code: &str) -> District {
    DISTRICTS
        .iter()
        .copied()
        .find(|d| d.code == code)
        .unwrap_or_default()
}

/// A birth-place region code: mostly `home`, sometimes elsewhere in the Delta or the country.
fn birth_region(rng: &mut StdRng, home: District) -> &'static str {
    match rng.gen_range(0..100) {
        0..60 => home.code,
        60..85 => any_district(rng).code,
        _ => pick(rng, OTHER_REGIONS),
    }
}

// ---------------------------------------------------------------------------------------------
// People
// ---------------------------------------------------------------------------------------------

static SURNAMES: &[(&str, u32)] = &[
    ("王", 70),
    ("李", 70),
    ("张", 65),
    ("刘", 50),
    ("陈", 60),
    ("杨", 35),
    ("黄", 25),
    ("赵", 25),
    ("吴", 30),
    ("周", 30),
    ("徐", 30),
    ("孙", 20),
    ("马", 15),
    ("朱", 25),
    ("胡", 20),
    ("郭", 12),
    ("何", 12),
    ("林", 15),
    ("高", 12),
    ("罗", 10),
    ("郑", 12),
    ("梁", 8),
    ("谢", 10),
    ("宋", 8),
    ("唐", 10),
    ("许", 12),
    ("韩", 8),
    ("冯", 8),
    ("邓", 6),
    ("曹", 8),
    ("彭", 6),
    ("曾", 5),
    ("肖", 6),
    ("田", 5),
    ("董", 8),
    ("袁", 6),
    ("潘", 8),
    ("蒋", 10),
    ("蔡", 8),
    ("余", 6),
    ("杜", 5),
    ("叶", 10),
    ("程", 6),
    ("沈", 15),
    ("钱", 10),
    ("陆", 12),
    ("顾", 12),
    ("姚", 8),
    ("汪", 10),
    ("戴", 6),
    ("范", 6),
    ("金", 8),
    ("施", 6),
    ("邵", 5),
    ("方", 8),
    ("俞", 5),
    ("倪", 5),
    ("严", 5),
    ("华", 4),
    ("诸葛", 1),
    ("欧阳", 1),
];

static MALE_OLD: &[&str] = &[
    "建国", "建华", "国强", "志明", "国平", "卫东", "德明", "福生", "金根", "根宝", "永康", "国华",
    "明", "华", "强", "军", "平", "林", "荣", "忠",
];
static FEMALE_OLD: &[&str] = &[
    "秀英", "桂英", "玉兰", "秀兰", "凤英", "丽华", "淑珍", "美华", "金凤", "彩娣", "杏芳", "月娥",
    "英", "兰", "芳", "珍", "华", "琴",
];
static MALE_MID: &[&str] = &[
    "伟", "强", "磊", "军", "勇", "杰", "涛", "斌", "超", "鹏", "明", "辉", "峰", "刚", "健",
    "文斌", "志强", "晓东", "海峰", "建军", "俊", "浩", "海涛", "立新", "振华", "晓明",
];
static FEMALE_MID: &[&str] = &[
    "芳", "娜", "敏", "静", "丽", "婷", "燕", "霞", "玲", "洁", "颖", "倩", "晓燕", "丽娟", "海燕",
    "雪梅", "春梅", "红霞", "晓红", "慧", "艳", "佳", "琳",
];
static MALE_YOUNG: &[&str] = &[
    "浩然", "子轩", "宇航", "俊杰", "思远", "一鸣", "子豪", "嘉豪", "梓睿", "宇轩", "晨阳", "博文",
    "皓轩", "逸凡", "昊", "睿", "轩", "哲",
];
static FEMALE_YOUNG: &[&str] = &[
    "欣怡", "梓涵", "雨萱", "诗琪", "佳怡", "思雨", "可欣", "子涵", "雨桐", "心怡", "若曦", "语嫣",
    "梦瑶", "一诺", "悦", "萌", "琪",
];

fn given_name(rng: &mut StdRng, male: bool, birth_year: i64) -> &'static str {
    let list = match (birth_year, male) {
        (..1965, true) => MALE_OLD,
        (..1965, false) => FEMALE_OLD,
        (1965..1990, true) => MALE_MID,
        (1965..1990, false) => FEMALE_MID,
        (_, true) => MALE_YOUNG,
        (_, false) => FEMALE_YOUNG,
    };
    pick(rng, list)
}

fn full_name(rng: &mut StdRng, male: bool, birth_year: i64) -> String {
    let surname = weighted(rng, SURNAMES);
    format!("{surname}{}", given_name(rng, male, birth_year))
}

#[derive(Debug, Clone)]
struct Person {
    name: String,
    id_number: String,
    birth: Date,
    male: bool,
}

/// A 17-digit body and its check character; `region` must be 6 digits.
fn id_number(rng: &mut StdRng, region: &str, birth: Date, male: bool) -> String {
    let order = rng.gen_range(0..100u32);
    let sex = rng.gen_range(0..5u32) * 2 + u32::from(male);
    let first17 = format!("{region}{}{order:02}{sex}", birth.compact());
    let check = id_card_check_char(&first17).unwrap_or('0');
    format!("{first17}{check}")
}

/// A person aged `min_age..=max_age` on `on`, living in `home` (see [`birth_region`]).
fn resident(rng: &mut StdRng, home: District, min_age: i64, max_age: i64, on: Date) -> Person {
    let region = birth_region(rng, home);
    person_aged(rng, region, min_age, max_age, on)
}

/// A person aged `min_age..=max_age` on `on`, born in `region`.
fn person_aged(rng: &mut StdRng, region: &str, min_age: i64, max_age: i64, on: Date) -> Person {
    let male = rng.gen_bool(0.5);
    let latest = on.add_years(-min_age);
    let earliest = on.add_years(-max_age - 1).add_days(1);
    let birth = date_between(rng, earliest, latest);
    Person {
        name: full_name(rng, male, birth.year()),
        id_number: id_number(rng, region, birth, male),
        birth,
        male,
    }
}

static PHONE_PREFIXES: &[&str] = &[
    "130", "131", "132", "133", "135", "136", "137", "138", "139", "150", "151", "152", "153",
    "155", "156", "157", "158", "159", "166", "173", "177", "180", "181", "182", "183", "185",
    "186", "187", "188", "189", "191", "198", "199",
];

fn mobile_phone(rng: &mut StdRng) -> String {
    format!("{}{}", pick(rng, PHONE_PREFIXES), digits(rng, 8))
}

// ---------------------------------------------------------------------------------------------
// Organisations
// ---------------------------------------------------------------------------------------------

/// A unified social credit code: `prefix` (registration authority and category), `region`,
/// an organization code with its GB 11714 check character, and the GB 32100 check character.
fn uscc_from(rng: &mut StdRng, prefix: &str, region: &str, new_style: bool) -> String {
    let body: String = if new_style {
        // Codes assigned since the 2015 reform start with `MA`.
        let tail: String = (0..6)
            .map(|_| char::from(pick(rng, USCC_ALPHABET.as_slice())))
            .collect();
        format!("MA{tail}")
    } else {
        // Older codes carry the former 8-digit organization code.
        format!("{}{}", rng.gen_range(1..10u8), digits(rng, 7))
    };
    let org_check = org_code_check_char(&body).unwrap_or('0');
    let first17 = format!("{prefix}{region}{body}{org_check}");
    let check = uscc_check_char(&first17).unwrap_or('0');
    format!("{first17}{check}")
}

/// The code of a government body, the same every time for the same name.
fn agency_uscc(name: &str, region: &str, prefix: &str) -> String {
    let mut rng = StdRng::seed_from_u64(fnv1a(name));
    uscc_from(&mut rng, prefix, region, false)
}

#[derive(Debug, Clone, Copy, Default)]
struct Industry {
    word: &'static str,
    sole_word: &'static str,
    scope: &'static str,
}

static INDUSTRIES: &[Industry] = &[
    Industry {
        word: "信息科技",
        sole_word: "信息技术服务部",
        scope: "一般项目：技术服务、技术开发、技术咨询、技术交流、技术转让、技术推广；软件开发；信息系统集成服务；数据处理和存储支持服务；计算机软硬件及辅助设备零售。（除依法须经批准的项目外，凭营业执照依法自主开展经营活动）",
    },
    Industry {
        word: "精密机械",
        sole_word: "机械加工厂",
        scope: "一般项目：通用设备制造（不含特种设备制造）；机械零件、零部件加工；金属切削加工服务；机械设备销售；五金产品批发。（除依法须经批准的项目外，凭营业执照依法自主开展经营活动）",
    },
    Industry {
        word: "贸易",
        sole_word: "贸易商行",
        scope: "许可项目：货物进出口；技术进出口。一般项目：日用百货销售；五金产品批发；电子产品销售；针纺织品销售；化工产品销售（不含许可类化工产品）。（除依法须经批准的项目外，凭营业执照依法自主开展经营活动）",
    },
    Industry {
        word: "餐饮管理",
        sole_word: "餐饮店",
        scope: "许可项目：餐饮服务；食品销售。一般项目：餐饮管理；外卖递送服务；食用农产品零售。（除依法须经批准的项目外，凭营业执照依法自主开展经营活动）",
    },
    Industry {
        word: "建设工程",
        sole_word: "装饰工程部",
        scope: "许可项目：建设工程施工；住宅室内装饰装修。一般项目：园林绿化工程施工；建筑材料销售；工程管理服务。（除依法须经批准的项目外，凭营业执照依法自主开展经营活动）",
    },
    Industry {
        word: "生物医药科技",
        sole_word: "医药信息咨询部",
        scope: "一般项目：医学研究和试验发展；技术服务、技术开发、技术咨询、技术交流、技术转让、技术推广；第一类医疗器械销售；第二类医疗器械销售。（除依法须经批准的项目外，凭营业执照依法自主开展经营活动）",
    },
    Industry {
        word: "新能源科技",
        sole_word: "新能源技术服务部",
        scope: "一般项目：新兴能源技术研发；太阳能发电技术服务；储能技术服务；电池销售；光伏设备及元器件销售。（除依法须经批准的项目外，凭营业执照依法自主开展经营活动）",
    },
    Industry {
        word: "供应链管理",
        sole_word: "物流信息服务部",
        scope: "许可项目：道路货物运输（不含危险货物）。一般项目：供应链管理服务；普通货物仓储服务（不含危险化学品等需许可审批的项目）；国内货物运输代理；装卸搬运。（除依法须经批准的项目外，凭营业执照依法自主开展经营活动）",
    },
    Industry {
        word: "企业管理咨询",
        sole_word: "企业管理咨询中心",
        scope: "一般项目：企业管理咨询；信息咨询服务（不含许可类信息咨询服务）；市场营销策划；会议及展览服务；商务代理代办服务。（除依法须经批准的项目外，凭营业执照依法自主开展经营活动）",
    },
];

static TRADE_NAMES: &[&str] = &[
    "恒信", "华泰", "宏达", "新源", "博远", "金诚", "瑞丰", "锦程", "天合", "中和", "永安", "嘉禾",
    "明德", "众诚", "鼎盛", "凯越", "晨光", "海润", "汇通", "启元", "致远", "同舟", "长风", "云帆",
    "星河", "泓川", "臻品", "睿达", "聚力", "德润",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum EnterpriseType {
    #[default]
    NaturalPersonLtd,
    SolePersonLtd,
    CorporateLtd,
    StateLtd,
    ForeignLtd,
    JointStock,
    Listed,
    SoleProprietorship,
}

impl EnterpriseType {
    fn label(self) -> &'static str {
        match self {
            Self::NaturalPersonLtd => "有限责任公司（自然人投资或控股）",
            Self::SolePersonLtd => "有限责任公司（自然人独资）",
            Self::CorporateLtd => "有限责任公司（非自然人投资或控股的法人独资）",
            Self::StateLtd => "有限责任公司（国有独资）",
            Self::ForeignLtd => "有限责任公司（外商投资、非独资）",
            Self::JointStock => "股份有限公司（非上市、自然人投资或控股）",
            Self::Listed => "股份有限公司（上市）",
            Self::SoleProprietorship => "个人独资企业",
        }
    }
}

static ENTERPRISE_TYPES: &[(EnterpriseType, u32)] = &[
    (EnterpriseType::NaturalPersonLtd, 50),
    (EnterpriseType::SolePersonLtd, 16),
    (EnterpriseType::CorporateLtd, 10),
    (EnterpriseType::StateLtd, 2),
    (EnterpriseType::ForeignLtd, 6),
    (EnterpriseType::JointStock, 5),
    (EnterpriseType::Listed, 1),
    (EnterpriseType::SoleProprietorship, 10),
];

#[derive(Debug, Clone)]
struct Company {
    name: String,
    uscc: String,
    kind: EnterpriseType,
    industry: Industry,
    district: District,
    registered_at_city: bool,
    established: Date,
}

fn company(rng: &mut StdRng, district: District, established: Date) -> Company {
    let kind = weighted(rng, ENTERPRISE_TYPES);
    let industry = pick(rng, INDUSTRIES);
    let trade = pick(rng, TRADE_NAMES);
    let city = district.city_short();
    let name = match kind {
        EnterpriseType::SoleProprietorship => format!("{city}{trade}{}", industry.sole_word),
        EnterpriseType::JointStock | EnterpriseType::Listed => {
            format!("{city}{trade}{}股份有限公司", industry.word)
        }
        _ => format!("{city}{trade}{}有限公司", industry.word),
    };
    let registered_at_city = rng.gen_bool(0.3);
    let region = if registered_at_city {
        district.city_code()
    } else {
        district.code.to_owned()
    };
    let uscc = uscc_from(rng, "91", &region, established.year() >= 2016);
    Company {
        name,
        uscc,
        kind,
        industry,
        district,
        registered_at_city,
        established,
    }
}

/// An employer founded some time before `before`.
fn employer(rng: &mut StdRng, district: District, before: Date) -> Company {
    let established = date_between(rng, Date::from_ymd(1992, 1, 1), before.add_days(-30));
    company(rng, district, established)
}

/// A public institution (事业单位) and its code, for the public-institution pension.
fn public_institution(rng: &mut StdRng, district: District) -> (String, String) {
    let locality = district.locality();
    let kinds = [
        "第一中学",
        "实验小学",
        "疾病预防控制中心",
        "图书馆",
        "人民医院",
        "档案馆",
    ];
    let name = format!("{locality}{}", pick(rng, &kinds));
    let code = agency_uscc(&name, district.code, "12");
    (name, code)
}

static ROADS: &[&str] = &[
    "人民路",
    "中山路",
    "解放路",
    "建设路",
    "长江路",
    "新华路",
    "和平路",
    "文化路",
    "学府路",
    "科技路",
    "创新大道",
    "星湖街",
    "滨江大道",
    "环城北路",
    "青年路",
    "东风路",
    "工业园路",
    "湖滨路",
    "府前街",
    "迎宾大道",
];

fn street_address(rng: &mut StdRng, district: District) -> String {
    let road = pick(rng, ROADS);
    let no = rng.gen_range(1..=999);
    let tail = if rng.gen_bool(0.5) {
        format!(
            "{}幢{}室",
            rng.gen_range(1..=20),
            rng.gen_range(101..=2_499)
        )
    } else {
        String::new()
    };
    format!("{}{road}{no}号{tail}", district.full_name())
}

// ---------------------------------------------------------------------------------------------
// Record generators
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    EnterpriseLicence,
    SocialInsurance,
    MedicalSettlement,
    HousingFund,
    ElectronicLicence,
    ElderlyCare,
}

impl Kind {
    fn from_id(id: &str) -> Option<Self> {
        Some(match id {
            "enterprise-licence" => Self::EnterpriseLicence,
            "social-insurance-contribution" => Self::SocialInsurance,
            "medical-insurance-settlement" => Self::MedicalSettlement,
            "housing-provident-fund" => Self::HousingFund,
            "electronic-licence-index" => Self::ElectronicLicence,
            "elderly-care-subsidy" => Self::ElderlyCare,
            _ => return None,
        })
    }
}

#[derive(Debug)]
struct Records {
    kind: Kind,
    rng: StdRng,
    index: u64,
}

impl Iterator for Records {
    type Item = Value;

    fn next(&mut self) -> Option<Value> {
        let rng = &mut self.rng;
        let index = self.index;
        self.index = self.index.wrapping_add(1);
        Some(match self.kind {
            Kind::EnterpriseLicence => enterprise_licence(rng),
            Kind::SocialInsurance => social_insurance(rng, index),
            Kind::MedicalSettlement => medical_settlement(rng, index),
            Kind::HousingFund => housing_fund(rng, index),
            Kind::ElectronicLicence => electronic_licence(rng, index),
            Kind::ElderlyCare => elderly_care(rng, index),
        })
    }
}

/// A serial number: `random_digits` random digits then the record index, `index_digits` wide.
fn serial(rng: &mut StdRng, random_digits: usize, index: u64, index_digits: u32) -> String {
    let modulus = 10u64.saturating_pow(index_digits);
    let width = usize::try_from(index_digits).unwrap_or(0);
    format!(
        "{}{:0width$}",
        digits(rng, random_digits),
        index.wrapping_add(1) % modulus
    )
}

fn enterprise_licence(rng: &mut StdRng) -> Value {
    let today = reference_date();
    let district = any_district(rng);
    let established = date_between(
        rng,
        Date::from_ymd(1995, 1, 1),
        Date::from_ymd(2024, 12, 31),
    );
    let c = company(rng, district, established);
    let rep = resident(rng, district, 25, 62, established);
    let capital_fen: i64 = match c.kind {
        EnterpriseType::SoleProprietorship => pick(rng, &[10_000, 50_000, 100_000, 300_000]) * 100,
        EnterpriseType::Listed => between(rng, 100_000_000, 2_000_000_000) * 100,
        _ if rng.gen_bool(0.1) => between(rng, 10_000_000, 500_000_000),
        _ => {
            pick(
                rng,
                &[
                    100_000, 500_000, 1_000_000, 2_000_000, 3_000_000, 5_000_000, 10_000_000,
                    50_000_000,
                ],
            ) * 100
        }
    };
    let currency = match c.kind {
        EnterpriseType::ForeignLtd => weighted(
            rng,
            &[
                ("CNY", 40),
                ("USD", 35),
                ("HKD", 15),
                ("EUR", 5),
                ("JPY", 5),
            ],
        ),
        _ => "CNY",
    };
    let term_to = if c.kind == EnterpriseType::SoleProprietorship || rng.gen_bool(0.5) {
        Value::Null
    } else {
        let years = pick(rng, &[10, 20, 30, 50]);
        json!(established.add_years(years).add_days(-1).iso())
    };
    let approval = if rng.gen_bool(0.4) {
        established
    } else {
        date_between(rng, established, today)
    };
    let status = weighted(
        rng,
        &[
            ("存续", 85),
            ("在业", 5),
            ("注销", 5),
            ("吊销", 3),
            ("迁出", 1),
            ("撤销", 1),
        ],
    );
    let (region_code, authority) = if c.registered_at_city {
        (
            district.city_code(),
            format!("{}市场监督管理局", district.city),
        )
    } else {
        (
            district.code.to_owned(),
            format!("{}市场监督管理局", district.locality()),
        )
    };
    json!({
        "uscc": c.uscc,
        "enterprise_name": c.name,
        "enterprise_type": c.kind.label(),
        "legal_representative": rep.name,
        "legal_representative_id_number": rep.id_number,
        "registered_capital": yuan(capital_fen),
        "currency": currency,
        "establishment_date": established.iso(),
        "business_term_to": term_to,
        "registration_authority": authority,
        "approval_date": approval.iso(),
        "address": street_address(rng, c.district),
        "region_code": region_code,
        "status": status,
        "business_scope": c.industry.scope,
    })
}

/// Approximate contribution-base bounds in yuan (lower, upper) by province prefix.
fn social_base_bounds(district: District) -> (i64, i64) {
    match district.province_prefix() {
        "32" => (4_494, 24_042),
        "33" => (4_462, 24_930),
        "34" => (4_227, 21_135),
        _ => (7_384, 36_921),
    }
}

fn social_insurance(rng: &mut StdRng, index: u64) -> Value {
    let today = reference_date();
    let district = any_district(rng);
    let month = month_between(rng, Month::new(2019, 1), Month::new(2025, 5));
    let first = month.first_day();
    let p = resident(rng, district, 18, 60, first);
    let insurance = weighted(rng, &[("110", 55), ("210", 20), ("410", 20), ("120", 5)]);
    let (employer_name, employer_uscc) = if insurance == "120" {
        public_institution(rng, district)
    } else {
        let c = employer(rng, district, first);
        (c.name, c.uscc)
    };
    let (lo, hi) = social_base_bounds(district);
    let base = match rng.gen_range(0..10) {
        0..4 => lo,
        4 => hi,
        _ => between(rng, lo, hi),
    } * 100;
    let (employer_bp, individual_bp) = match insurance {
        "110" | "120" => (1_600, 800),
        "210" => (50, 50),
        _ => (pick(rng, &[20, 40, 50, 70, 100, 120, 160]), 0),
    };
    let status = weighted(rng, &[("已实缴", 88), ("补缴", 6), ("欠缴", 6)]);
    let paid = match status {
        "已实缴" => json!(first.add_days(between(rng, 4, 27)).iso()),
        "补缴" => json!(first.add_days(between(rng, 60, 540)).min(today).iso()),
        _ => Value::Null,
    };
    json!({
        "record_id": format!("SI{}{}{}", district.code, first.compact(), serial(rng, 0, index, 8)),
        "id_number": p.id_number,
        "name": p.name,
        "insurance_type": insurance,
        "employer_uscc": employer_uscc,
        "employer_name": employer_name,
        "insured_region_code": district.code,
        "contribution_month": month.compact(),
        "contribution_base": yuan(base),
        "employer_amount": yuan(share(base, employer_bp)),
        "individual_amount": yuan(share(base, individual_bp)),
        "payment_status": status,
        "payment_date": paid,
    })
}

/// Well-known hospitals of the Delta with the district they stand in.
static HOSPITALS: &[(&str, &str)] = &[
    ("310104", "复旦大学附属中山医院"),
    ("310101", "上海交通大学医学院附属瑞金医院"),
    ("310106", "复旦大学附属华山医院"),
    ("310104", "上海市第六人民医院"),
    ("310104", "复旦大学附属肿瘤医院"),
    ("320106", "江苏省人民医院"),
    ("320106", "南京鼓楼医院"),
    ("320508", "苏州大学附属第一医院"),
    ("320213", "无锡市人民医院"),
    ("320402", "常州市第一人民医院"),
    ("330102", "浙江大学医学院附属第一医院"),
    ("330102", "浙江大学医学院附属邵逸夫医院"),
    ("330105", "浙江省人民医院"),
    ("330203", "宁波市第一医院"),
    ("330304", "温州医科大学附属第一医院"),
    ("340104", "安徽医科大学第一附属医院"),
    ("340103", "中国科学技术大学附属第一医院（安徽省立医院）"),
    ("340202", "皖南医学院第一附属医院（弋矶山医院）"),
];

fn medical_settlement(rng: &mut StdRng, index: u64) -> Value {
    let insured = any_district(rng);
    // Shanghai has no second prefecture-level city, so its patients are always treated elsewhere.
    let cross_province = insured.is_shanghai() || rng.gen_bool(0.8);
    let mut treated = if cross_province {
        district_where(rng, |d| d.province_prefix() != insured.province_prefix())
    } else {
        district_where(rng, |d| {
            d.province_prefix() == insured.province_prefix() && !d.same_city(&insured)
        })
    };
    let famous: Vec<(&str, &str)> = HOSPITALS
        .iter()
        .copied()
        .filter(|(code, _)| {
            code.get(..2) == Some(treated.province_prefix())
                && code.get(..4) != insured.code.get(..4)
        })
        .collect();
    let institution = if !famous.is_empty() && rng.gen_bool(0.5) {
        let (code, name) = pick(rng, &famous);
        treated = district_by_code(code);
        name.to_owned()
    } else {
        let kinds = ["人民医院", "中医医院", "第一人民医院", "妇幼保健院"];
        match pick(rng, &kinds) {
            k @ ("中医医院" | "第一人民医院") => format!("{}{k}", treated.city),
            k => format!("{}{k}", treated.locality()),
        }
    };
    let institution_code = format!("H{}{:05}", treated.code, fnv1a(&institution) % 100_000);
    let employee = rng.gen_bool(0.7);
    let today = reference_date();
    let settled = date_between(rng, Date::from_ymd(2022, 1, 1), today);
    let p = if employee {
        resident(rng, insured, 18, 80, settled)
    } else {
        resident(rng, insured, 1, 90, settled)
    };
    let medical_type = weighted(rng, &[("普通门诊", 45), ("门诊慢特病", 15), ("住院", 40)]);
    let (admitted, total, fund_bp, diagnoses): (Date, i64, i64, &[&str]) = match medical_type {
        "住院" => {
            let total = match rng.gen_range(0..100) {
                0..70 => between(rng, 300_000, 3_000_000),
                70..95 => between(rng, 3_000_000, 10_000_000),
                _ => between(rng, 10_000_000, 30_000_000),
            };
            let bp = if employee {
                between(rng, 7_000, 9_000)
            } else {
                between(rng, 5_000, 7_000)
            };
            let dx: &[&str] = &[
                "I63.9", "J18.9", "K80.1", "S72.0", "C34.9", "I21.9", "K35.8", "N20.0",
            ];
            (settled.add_days(-between(rng, 2, 30)), total, bp, dx)
        }
        "门诊慢特病" => {
            let bp = if employee {
                between(rng, 7_000, 8_500)
            } else {
                between(rng, 5_500, 7_000)
            };
            let dx: &[&str] = &["I10", "E11.9", "N18.5", "C50.9", "I25.1", "F20.9"];
            (settled, between(rng, 20_000, 800_000), bp, dx)
        }
        _ => {
            let bp = if employee {
                between(rng, 5_000, 7_000)
            } else {
                between(rng, 4_000, 6_000)
            };
            let dx: &[&str] = &["J06.9", "K29.7", "I10", "E11.9", "M54.5", "J20.9", "H10.9"];
            (settled, between(rng, 5_000, 80_000), bp, dx)
        }
    };
    let fund = share(total, fund_bp);
    let rest = total - fund;
    let account = if employee && rng.gen_bool(0.6) {
        share(rest, between(rng, 0, 10_000))
    } else {
        0
    };
    let cash = rest - account;
    json!({
        "settlement_id": format!("YD{}{}{}", treated.code, settled.compact(), serial(rng, 4, index, 6)),
        "insured_id_number": p.id_number,
        "insured_name": p.name,
        "insured_region_code": insured.code,
        "treatment_region_code": treated.code,
        "insurance_type": if employee { "310" } else { "390" },
        "medical_type": medical_type,
        "institution_code": institution_code,
        "institution_name": institution,
        "admission_date": admitted.iso(),
        "settlement_date": settled.iso(),
        "diagnosis_code": pick(rng, diagnoses),
        "total_cost": yuan(total),
        "fund_payment": yuan(fund),
        "personal_account_payment": yuan(account),
        "cash_payment": yuan(cash),
    })
}

/// Approximate provident-fund deposit-base bounds in yuan (lower, upper) by province prefix.
fn fund_base_bounds(district: District) -> (i64, i64) {
    match district.province_prefix() {
        "32" => (2_280, 33_000),
        "33" => (2_280, 35_000),
        "34" => (2_060, 26_000),
        _ => (2_690, 36_921),
    }
}

fn housing_fund(rng: &mut StdRng, index: u64) -> Value {
    let district = any_district(rng);
    let month = month_between(rng, Month::new(2019, 1), Month::new(2025, 5));
    let first = month.first_day();
    let p = resident(rng, district, 20, 60, first);
    let c = employer(rng, district, first);
    let centre = district.city_code();
    let (lo, hi) = fund_base_bounds(district);
    let base_yuan = match rng.gen_range(0..10) {
        0..2 => lo,
        2 => hi,
        _ => between(rng, lo, hi),
    };
    let rate_pct: i64 = if district.is_shanghai() {
        pick(rng, &[5, 6, 7])
    } else {
        pick(rng, &[5, 6, 7, 8, 10, 12])
    };
    let status = weighted(rng, &[("正常", 90), ("冻结", 3), ("封存", 5), ("销户", 2)]);
    let depositing = matches!(status, "正常" | "冻结");
    // Deposits are rounded to whole yuan, as most centres do.
    let monthly_fen = if depositing {
        (base_yuan * rate_pct + 50) / 100 * 100
    } else {
        0
    };
    let age_months = (first.year() - p.birth.year() - 20).max(0) * 12;
    let months_paid = between(rng, 1, age_months.clamp(1, 360));
    let balance = match status {
        "销户" => 0,
        _ => {
            let paid = (base_yuan * rate_pct + 50) / 100 * 100 * 2 * months_paid;
            share(paid, between(rng, 2_000, 10_000))
        }
    };
    let rate = |pct: i64| {
        #[allow(clippy::cast_precision_loss)]
        let v = pct as f64 / 100.0;
        json!(v)
    };
    json!({
        "record_id": format!("GJJ{centre}{}{}", first.compact(), serial(rng, 0, index, 8)),
        "id_number": p.id_number,
        "name": p.name,
        "mobile_phone": mobile_phone(rng),
        "account_number": format!("{}{}", centre.get(..4).unwrap_or("3100"), digits(rng, 8)),
        "employer_uscc": c.uscc,
        "employer_name": c.name,
        "centre_region_code": centre,
        "deposit_month": month.compact(),
        "deposit_base": yuan(base_yuan * 100),
        "employer_rate": rate(rate_pct),
        "individual_rate": rate(rate_pct),
        "employer_amount": yuan(monthly_fen),
        "individual_amount": yuan(monthly_fen),
        "account_balance": yuan(balance),
        "account_status": status,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum LicenceType {
    #[default]
    BusinessLicence,
    FoodBusiness,
    Marriage,
    Household,
    Driving,
    RealEstate,
    Disability,
}

fn electronic_licence(rng: &mut StdRng, index: u64) -> Value {
    use LicenceType as L;
    let today = reference_date();
    let district = any_district(rng);
    let kind = weighted(
        rng,
        &[
            (L::BusinessLicence, 25),
            (L::FoodBusiness, 10),
            (L::Marriage, 15),
            (L::Household, 15),
            (L::Driving, 20),
            (L::RealEstate, 10),
            (L::Disability, 5),
        ],
    );
    let issued = date_between(rng, Date::from_ymd(2016, 1, 1), today.add_days(-1));
    let locality = district.locality();
    let (label, short) = match kind {
        L::BusinessLicence => ("营业执照", "YYZZ"),
        L::FoodBusiness => ("食品经营许可证", "SPJYXKZ"),
        L::Marriage => ("结婚证", "JHZ"),
        L::Household => ("居民户口簿", "JMHKB"),
        L::Driving => ("机动车驾驶证", "JDCJSZ"),
        L::RealEstate => ("不动产权证书", "BDCQZS"),
        L::Disability => ("残疾人证", "CJRZ"),
    };
    // (holder name, holder id type, holder id, licence number, issuer, issuer region, valid from, valid until)
    let (holder_name, holder_type, holder_id, number, issuer, issuer_region, from, until) =
        match kind {
            L::BusinessLicence | L::FoodBusiness => {
                let c = employer(rng, district, issued);
                let (number, from, until) = if kind == L::BusinessLicence {
                    (c.uscc.clone(), c.established, None)
                } else {
                    let number = format!(
                        "JY{}{}{}",
                        rng.gen_range(1..=3),
                        district.code,
                        digits(rng, 7)
                    );
                    (number, issued, Some(issued.add_years(5).add_days(-1)))
                };
                let issuer = format!("{locality}市场监督管理局");
                (
                    c.name,
                    "统一社会信用代码",
                    c.uscc,
                    number,
                    issuer,
                    district.code.to_owned(),
                    from,
                    until,
                )
            }
            _ => {
                let min_age = if kind == L::Marriage { 22 } else { 18 };
                let p = resident(rng, district, min_age, 80, issued);
                let (number, issuer, issuer_region, until) = match kind {
                    L::Marriage => (
                        format!("J{}-{}-{}", district.code, issued.year(), digits(rng, 6)),
                        format!("{locality}民政局"),
                        district.code.to_owned(),
                        None,
                    ),
                    L::Household => {
                        let issuer = if district.is_shanghai() {
                            format!("上海市公安局{}分局", district.name.trim_end_matches('区'))
                        } else if district.name.ends_with('区') {
                            format!("{}公安局{}分局", district.city, district.name)
                        } else {
                            format!("{}公安局", district.name)
                        };
                        (digits(rng, 9), issuer, district.code.to_owned(), None)
                    }
                    L::Driving => {
                        let issuer = if district.is_shanghai() {
                            "上海市公安局交通警察总队".to_owned()
                        } else {
                            format!(
                                "{}{}公安局交通警察支队",
                                district.province_name(),
                                district.city
                            )
                        };
                        let until = match rng.gen_range(0..10) {
                            0..3 => Some(issued.add_years(6)),
                            3..8 => Some(issued.add_years(10)),
                            _ => None,
                        };
                        (p.id_number.clone(), issuer, district.city_code(), until)
                    }
                    L::RealEstate => {
                        let issuer = if district.is_shanghai() {
                            "上海市规划和自然资源局".to_owned()
                        } else {
                            format!("{}自然资源和规划局", district.city)
                        };
                        let number = format!(
                            "{}（{}）{}不动产权第{}号",
                            district.province_abbr(),
                            issued.year(),
                            district.name,
                            digits(rng, 7)
                        );
                        (number, issuer, district.city_code(), None)
                    }
                    _ => (
                        format!(
                            "{}{}{}",
                            p.id_number,
                            rng.gen_range(1..=7),
                            rng.gen_range(1..=4)
                        ),
                        format!("{locality}残疾人联合会"),
                        district.code.to_owned(),
                        Some(issued.add_years(10)),
                    ),
                };
                (
                    p.name,
                    "居民身份证",
                    p.id_number,
                    number,
                    issuer,
                    issuer_region,
                    issued,
                    until,
                )
            }
        };
    let issuer_code = agency_uscc(&issuer, &issuer_region, "11");
    let status = match until {
        Some(u) if u < today => "已过期",
        _ => weighted(rng, &[("有效", 92), ("已注销", 5), ("已废止", 3)]),
    };
    let version = if rng.gen_bool(0.85) {
        1
    } else {
        rng.gen_range(2..=5)
    };
    let digest: [u8; 32] = rng.r#gen();
    let updated = date_between(rng, issued, today);
    let updated_at = format!(
        "{}T{:02}:{:02}:{:02}+08:00",
        updated.iso(),
        rng.gen_range(8..=20),
        rng.gen_range(0..60),
        rng.gen_range(0..60)
    );
    json!({
        "licence_id": format!("{short}.{issuer_code}.{}.{version:03}", serial(rng, 2, index, 6)),
        "licence_type": label,
        "licence_number": number,
        "holder_name": holder_name,
        "holder_id_type": holder_type,
        "holder_id": holder_id,
        "issuer_name": issuer,
        "issuer_code": issuer_code,
        "issue_date": issued.iso(),
        "valid_from": from.iso(),
        "valid_until": until.map(Date::iso),
        "region_code": district.code,
        "status": status,
        "digest_algorithm": weighted(rng, &[("SM3", 80), ("SHA-256", 20)]),
        "file_digest": hex::encode(digest),
        "updated_at": updated_at,
    })
}

/// Cities that Shanghai residents commonly retire to (嘉兴, 湖州, 南通, 苏州, 宣城, 滁州).
static RETIREMENT_CITIES: &[&str] = &["3304", "3305", "3206", "3205", "3418", "3411"];

fn elderly_care(rng: &mut StdRng, index: u64) -> Value {
    let today = reference_date();
    let hukou = if rng.gen_bool(0.5) {
        district_where(rng, District::is_shanghai)
    } else {
        district_where(rng, |d| !d.is_shanghai())
    };
    let residence = if hukou.is_shanghai() && rng.gen_bool(0.8) {
        district_where(rng, |d| {
            d.code
                .get(..4)
                .is_some_and(|c| RETIREMENT_CITIES.contains(&c))
        })
    } else {
        district_where(rng, |d| !d.same_city(&hukou))
    };
    let month = month_between(rng, Month::new(2023, 1), Month::new(2025, 5));
    let first = month.first_day();
    let subsidy = weighted(rng, &[("高龄津贴", 35), ("护理补贴", 35), ("服务补贴", 30)]);
    let (min_age, levels): (i64, &[(&str, u32)]) = match subsidy {
        "高龄津贴" => (
            80,
            &[
                ("能力完好", 40),
                ("轻度失能", 30),
                ("中度失能", 15),
                ("重度失能", 10),
                ("完全失能", 5),
            ],
        ),
        "护理补贴" => (60, &[("中度失能", 40), ("重度失能", 35), ("完全失能", 25)]),
        _ => (
            60,
            &[
                ("能力完好", 20),
                ("轻度失能", 40),
                ("中度失能", 30),
                ("重度失能", 10),
            ],
        ),
    };
    let elder = person_aged(rng, hukou.code, min_age, 102, first);
    let level = weighted(rng, levels);
    let age = first.year() - elder.birth.year();
    let care = match subsidy {
        "护理补贴" => weighted(rng, &[("机构养老", 60), ("居家养老", 30), ("社区养老", 10)]),
        _ => weighted(rng, &[("机构养老", 35), ("居家养老", 45), ("社区养老", 20)]),
    };
    let amount_yuan = match (subsidy, level) {
        ("高龄津贴", _) if age >= 100 => between(rng, 60, 100) * 10,
        ("高龄津贴", _) if age >= 90 => between(rng, 20, 50) * 10,
        ("高龄津贴", _) => between(rng, 10, 20) * 10,
        ("护理补贴", "完全失能") => between(rng, 80, 120) * 10,
        ("护理补贴", "重度失能") => between(rng, 50, 80) * 10,
        ("护理补贴", _) => between(rng, 20, 50) * 10,
        _ => between(rng, 10, 80) * 10,
    };
    let institution = if care == "机构养老" {
        let trade = pick(rng, TRADE_NAMES);
        let name = match rng.gen_range(0..4) {
            0 => format!("{}社会福利院", residence.locality()),
            1 => format!("{}{trade}颐养院", residence.city_short()),
            2 => format!("{}{trade}护理院", residence.city_short()),
            _ => format!("{}{trade}康养中心", residence.locality()),
        };
        json!(name)
    } else {
        Value::Null
    };
    let contact = person_aged(rng, residence.code, 30, 65, today);
    let contact_name = if rng.gen_bool(0.6) {
        // A son or daughter, with the elder's surname (its first character, or two for 诸葛/欧阳).
        let surname: String = if elder.name.starts_with("诸葛") || elder.name.starts_with("欧阳")
        {
            elder.name.chars().take(2).collect()
        } else {
            elder.name.chars().take(1).collect()
        };
        format!(
            "{surname}{}",
            given_name(rng, contact.male, contact.birth.year())
        )
    } else {
        contact.name
    };
    json!({
        "subsidy_id": format!("YL{}{}{}", hukou.code, month.compact(), serial(rng, 0, index, 8)),
        "elder_id_number": elder.id_number,
        "elder_name": elder.name,
        "gender": if elder.male { "男" } else { "女" },
        "birth_date": elder.birth.iso(),
        "hukou_region_code": hukou.code,
        "residence_region_code": residence.code,
        "care_type": care,
        "ability_level": level,
        "subsidy_type": subsidy,
        "subsidy_month": month.compact(),
        "amount": yuan(amount_yuan * 100),
        "institution_name": institution,
        "contact_name": contact_name,
        "contact_phone": mobile_phone(rng),
        "payment_status": weighted(rng, &[("已发放", 85), ("待发放", 10), ("停发", 5)]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    const PER_STANDARD: usize = 200;

    fn schema_value(id: &str) -> Result<Value, Box<dyn std::error::Error>> {
        let text = schema_json(id).ok_or_else(|| format!("no schema for {id}"))?;
        Ok(serde_json::from_str(text)?)
    }

    fn str_field<'a>(record: &'a Value, key: &str) -> Result<&'a str, String> {
        record
            .get(key)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("{key} missing in {record}"))
    }

    fn num_field(record: &Value, key: &str) -> Result<f64, String> {
        record
            .get(key)
            .and_then(Value::as_f64)
            .ok_or_else(|| format!("{key} missing in {record}"))
    }

    fn fen(record: &Value, key: &str) -> Result<i64, String> {
        #[allow(clippy::cast_possible_truncation)]
        let v = (num_field(record, key)? * 100.0).round() as i64;
        Ok(v)
    }

    #[test]
    fn uscc_check_matches_public_examples() -> TestResult {
        assert_eq!(uscc_check_char("91350100M000100Y4"), Some('3'));
        assert!(is_valid_uscc("91350100M000100Y43"));
        assert!(!is_valid_uscc("91350100M000100Y44"));
        assert!(!is_valid_uscc("91350100M000100Y4"));
        assert!(!is_valid_uscc("91350100M000100Y4I"));
        assert!(!is_valid_uscc("9135010OM000100Y43"));
        assert_eq!(uscc_check_char("91350100M000100YI"), None);
        assert_eq!(uscc_check_char("short"), None);
        // Codes printed on the licences of well-known companies.
        assert!(is_valid_uscc("91330100716105852F"));
        assert!(is_valid_uscc("91440300708461136T"));
        // The organization code embedded in it (M000100Y-4) checks under GB 11714 too.
        assert_eq!(org_code_check_char("M000100Y"), Some('4'));
        Ok(())
    }

    #[test]
    fn id_card_check_matches_gb11643_examples() -> TestResult {
        // The examples printed in GB 11643-1999.
        assert_eq!(id_card_check_char("11010519491231002"), Some('X'));
        assert!(is_valid_id_card("11010519491231002X"));
        assert_eq!(id_card_check_char("44052418800101001"), Some('4'));
        assert!(is_valid_id_card("440524188001010014"));
        assert!(!is_valid_id_card("110105194912310021"));
        assert!(!is_valid_id_card("11010519491231002x"));
        assert!(!is_valid_id_card("11010519491331002X"));
        assert!(!is_valid_id_card("11010519491231002"));
        assert_eq!(id_card_check_char("1101051949123100A"), None);
        Ok(())
    }

    #[test]
    fn dates_round_trip() -> TestResult {
        for (y, m, d) in [
            (1970, 1, 1),
            (2000, 2, 29),
            (1949, 12, 31),
            (2025, 6, 30),
            (1880, 1, 1),
        ] {
            assert_eq!(Date::from_ymd(y, m, d).ymd(), (y, m, d));
        }
        assert_eq!(Date::from_ymd(1970, 1, 1), Date(0));
        assert_eq!(Date::from_ymd(2024, 2, 29).add_years(1).iso(), "2025-02-28");
        assert_eq!(reference_date().iso(), REFERENCE_DATE);
        assert_eq!(Month::new(2025, 12).compact(), "202512");
        assert_eq!(Month::new(2025, 12).first_day().iso(), "2025-12-01");
        Ok(())
    }

    #[test]
    fn every_standard_has_a_wellformed_schema() -> TestResult {
        for info in STANDARDS {
            let schema = schema_value(info.id)?;
            assert!(
                jsonschema::meta::is_valid(&schema),
                "{} is not a valid schema",
                info.id
            );
            assert_eq!(
                schema["$schema"],
                "https://json-schema.org/draft/2020-12/schema"
            );
            assert_eq!(
                schema["$id"],
                format!(
                    "https://yrd.example/schemas/datasets/{}/{}",
                    info.id, info.version
                )
            );
            assert_eq!(info.file_name, format!("{}.schema.json", info.id));
            assert_eq!(info.version, STANDARD_VERSION);
            let title = schema["title"].as_str().ok_or("no title")?;
            assert_eq!(title, format!("{} / {}", info.title_zh, info.title_en));
            assert_eq!(schema["additionalProperties"], false);
            let props = schema["properties"].as_object().ok_or("no properties")?;
            let required: BTreeSet<&str> = schema["required"]
                .as_array()
                .ok_or("no required")?
                .iter()
                .filter_map(Value::as_str)
                .collect();
            assert_eq!(required, props.keys().map(String::as_str).collect());
            let mut personal = Vec::new();
            for (key, prop) in props {
                let title = prop["title"]
                    .as_str()
                    .ok_or_else(|| format!("{key}: no title"))?;
                assert!(
                    title.contains(" / ") && !title.is_ascii(),
                    "{key}: title {title:?}"
                );
                assert!(prop.get("type").is_some(), "{}.{key}: no type", info.id);
                if prop.get("x-personal-data").is_some() {
                    personal.push(key.as_str());
                }
            }
            assert_eq!(personal, info.personal_fields, "{}", info.id);
            assert_eq!(standard(info.id), Some(info));
        }
        let enterprise = schema_value("enterprise-licence")?;
        assert_eq!(
            enterprise["properties"].as_object().map(|p| p.len()),
            Some(15)
        );
        assert!(schema_json("no-such-standard").is_none());
        Ok(())
    }

    #[test]
    fn generated_records_validate_against_their_schemas() -> TestResult {
        for info in STANDARDS {
            let schema = schema_value(info.id)?;
            let validator = jsonschema::options()
                .should_validate_formats(true)
                .build(&schema)?;
            for (i, record) in generate(info.id, PER_STANDARD, 7)?.iter().enumerate() {
                let errors: Vec<String> = validator
                    .iter_errors(record)
                    .map(|e| format!("{} at {}", e, e.instance_path()))
                    .collect();
                assert!(
                    errors.is_empty(),
                    "{} record {i} invalid: {errors:?}\n{record:#}",
                    info.id
                );
            }
        }
        Ok(())
    }

    #[test]
    fn schemas_reject_broken_records() -> TestResult {
        let schema = schema_value("enterprise-licence")?;
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .build(&schema)?;
        let good = generate("enterprise-licence", 1, 1)?
            .pop()
            .ok_or("no record")?;
        assert!(validator.is_valid(&good));
        let broken = |key: &str, value: Option<Value>| -> Result<bool, String> {
            let mut record = good.clone();
            let fields = record.as_object_mut().ok_or("not an object")?;
            match value {
                Some(v) => fields.insert(key.to_owned(), v),
                None => fields.remove(key),
            };
            Ok(validator.is_valid(&record))
        };
        assert!(
            !broken("nickname", Some(json!("x")))?,
            "extra field accepted"
        );
        assert!(!broken("uscc", None)?, "missing field accepted");
        assert!(
            !broken("establishment_date", Some(json!("2023-02-30")))?,
            "bad date accepted"
        );
        assert!(
            !broken("registered_capital", Some(json!(100.001)))?,
            "fractional fen accepted"
        );
        assert!(
            !broken("registered_capital", Some(json!(-1)))?,
            "negative money accepted"
        );
        assert!(
            !broken("uscc", Some(json!("91350100M000100I43")))?,
            "I in a code accepted"
        );
        assert!(
            !broken("status", Some(json!("营业中")))?,
            "unknown status accepted"
        );
        let id = "legal_representative_id_number";
        assert!(
            !broken(id, Some(json!("11010519491231002x")))?,
            "lower-case x accepted"
        );
        // A pattern cannot see a wrong check character; is_valid_uscc can.
        assert!(broken("uscc", Some(json!("91350100M000100Y44")))?);
        assert!(!is_valid_uscc("91350100M000100Y44"));
        Ok(())
    }

    #[test]
    fn generated_codes_have_valid_check_characters() -> TestResult {
        let id_fields = [
            "legal_representative_id_number",
            "id_number",
            "insured_id_number",
            "elder_id_number",
        ];
        let uscc_fields = ["uscc", "employer_uscc", "issuer_code"];
        let mut checked = (0, 0);
        for info in STANDARDS {
            for record in generate(info.id, PER_STANDARD, 11)? {
                for key in id_fields {
                    if let Some(v) = record.get(key).and_then(Value::as_str) {
                        assert!(is_valid_id_card(v), "{}.{key} = {v}", info.id);
                        checked.0 += 1;
                    }
                }
                for key in uscc_fields {
                    if let Some(v) = record.get(key).and_then(Value::as_str) {
                        assert!(is_valid_uscc(v), "{}.{key} = {v}", info.id);
                        let org = v.get(8..16).ok_or("short")?;
                        let org_check = v.chars().nth(16).ok_or("short")?;
                        assert_eq!(org_code_check_char(org), Some(org_check), "{v}");
                        checked.1 += 1;
                    }
                }
                if let (Some(kind), Some(holder)) = (
                    record.get("holder_id_type").and_then(Value::as_str),
                    record.get("holder_id").and_then(Value::as_str),
                ) {
                    if kind == "居民身份证" {
                        assert!(is_valid_id_card(holder), "{holder}");
                    } else {
                        assert!(is_valid_uscc(holder), "{holder}");
                    }
                }
            }
        }
        assert!(
            checked.0 >= 5 * PER_STANDARD && checked.1 >= 4 * PER_STANDARD,
            "{checked:?}"
        );
        Ok(())
    }

    #[test]
    fn same_seed_same_records() -> TestResult {
        for info in STANDARDS {
            let a = generate(info.id, 50, 42)?;
            assert_eq!(a, generate(info.id, 50, 42)?);
            assert_ne!(a, generate(info.id, 50, 43)?);
            let streamed: Vec<Value> = records(info.id, 42)?.take(50).collect();
            assert_eq!(a, streamed);
            assert_eq!(a.len(), 50);
        }
        assert!(generate("enterprise-licence", 0, 1)?.is_empty());
        Ok(())
    }

    #[test]
    fn standards_have_distinct_shapes() -> TestResult {
        let mut shapes = BTreeSet::new();
        for info in STANDARDS {
            let record = generate(info.id, 1, 3)?.pop().ok_or("no record")?;
            let keys: Vec<String> = record
                .as_object()
                .ok_or("not an object")?
                .keys()
                .cloned()
                .collect();
            assert!(
                shapes.insert(keys),
                "{} repeats another standard's fields",
                info.id
            );
        }
        assert_eq!(shapes.len(), STANDARDS.len());
        assert!(STANDARDS.len() >= 6);
        Ok(())
    }

    #[test]
    fn unknown_standard_is_named_in_the_error() {
        let err = generate("vehicle-teleport", 1, 1).err();
        assert_eq!(
            err,
            Some(SampleError::UnknownStandard("vehicle-teleport".into()))
        );
        let msg = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("vehicle-teleport"), "{msg}");
        assert!(records("", 1).is_err());
    }

    #[test]
    fn records_are_internally_consistent() -> TestResult {
        for r in generate("medical-insurance-settlement", PER_STANDARD, 5)? {
            let parts = fen(&r, "fund_payment")?
                + fen(&r, "personal_account_payment")?
                + fen(&r, "cash_payment")?;
            assert_eq!(fen(&r, "total_cost")?, parts, "{r}");
            assert_ne!(
                str_field(&r, "insured_region_code")?,
                str_field(&r, "treatment_region_code")?
            );
            assert!(str_field(&r, "admission_date")? <= str_field(&r, "settlement_date")?);
            let code = str_field(&r, "institution_code")?;
            assert_eq!(
                code.get(1..7),
                Some(str_field(&r, "treatment_region_code")?),
                "{r}"
            );
        }
        for r in generate("elderly-care-subsidy", PER_STANDARD, 5)? {
            let id = str_field(&r, "elder_id_number")?;
            assert_eq!(
                id.get(6..14),
                Some(str_field(&r, "birth_date")?.replace('-', "").as_str())
            );
            let male = id.as_bytes().get(16).is_some_and(|b| (b - b'0') % 2 == 1);
            assert_eq!(str_field(&r, "gender")?, if male { "男" } else { "女" });
            let hukou = str_field(&r, "hukou_region_code")?;
            let residence = str_field(&r, "residence_region_code")?;
            assert_ne!(hukou.get(..4), residence.get(..4), "{r}");
            let institutional = str_field(&r, "care_type")? == "机构养老";
            assert_eq!(institutional, r["institution_name"].is_string(), "{r}");
            if str_field(&r, "subsidy_type")? == "高龄津贴" {
                let born: i64 = id.get(6..10).ok_or("short")?.parse()?;
                let year: i64 = str_field(&r, "subsidy_month")?
                    .get(..4)
                    .ok_or("short")?
                    .parse()?;
                assert!(year - born >= 80, "{r}");
            }
        }
        for r in generate("enterprise-licence", PER_STANDARD, 5)? {
            assert!(str_field(&r, "establishment_date")? <= str_field(&r, "approval_date")?);
            assert!(str_field(&r, "approval_date")? <= REFERENCE_DATE);
            let uscc = str_field(&r, "uscc")?;
            assert_eq!(uscc.get(2..8), Some(str_field(&r, "region_code")?), "{r}");
        }
        for r in generate("social-insurance-contribution", PER_STANDARD, 5)? {
            let base = fen(&r, "contribution_base")?;
            if str_field(&r, "insurance_type")? == "110" {
                assert_eq!(fen(&r, "employer_amount")?, share(base, 1_600));
                assert_eq!(fen(&r, "individual_amount")?, share(base, 800));
            }
            assert_eq!(
                str_field(&r, "payment_status")? == "欠缴",
                r["payment_date"].is_null()
            );
        }
        for r in generate("housing-provident-fund", PER_STANDARD, 5)? {
            // Rates are whole percentages; deposits are rounded half up to whole yuan.
            let pct = fen(&r, "employer_rate")?;
            assert_eq!(pct, fen(&r, "individual_rate")?);
            let base_yuan = fen(&r, "deposit_base")? / 100;
            let expected = match str_field(&r, "account_status")? {
                "正常" | "冻结" => (base_yuan * pct + 50) / 100 * 100,
                _ => 0,
            };
            assert_eq!(fen(&r, "employer_amount")?, expected, "{r}");
            assert_eq!(fen(&r, "individual_amount")?, expected, "{r}");
        }
        Ok(())
    }

    #[test]
    fn region_table_covers_the_delta() {
        let cities: BTreeSet<String> = DISTRICTS.iter().map(District::city_code).collect();
        // Shanghai plus 13 cities of Jiangsu, 11 of Zhejiang and 16 of Anhui.
        assert_eq!(cities.len(), 41, "{cities:?}");
        let codes: BTreeSet<&str> = DISTRICTS.iter().map(|d| d.code).collect();
        assert_eq!(codes.len(), DISTRICTS.len(), "duplicate district codes");
        assert!(
            ["310101", "320505", "330106", "340104"]
                .iter()
                .all(|c| codes.contains(c))
        );
    }
}
