//! The GB/T 2260 administrative divisions of the Yangtze River Delta that may run a node: the four
//! provincial-level regions and their 41 prefecture-level cities (Shanghai counts as one city).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Whether a region is a province-level division or a prefecture-level city.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RegionLevel {
    /// 省级: a province or a municipality directly under the central government.
    Province,
    /// 地级: a prefecture-level city (Shanghai is listed as its own city too).
    City,
}

/// One row of the region table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegionInfo {
    /// Six-digit GB/T 2260 code.
    pub code: u32,
    /// Chinese name, e.g. "苏州市".
    pub name_zh: &'static str,
    /// Pinyin/English name, e.g. "Suzhou".
    pub name_en: &'static str,
    /// Code of the province this region belongs to (itself for provinces).
    pub province: u32,
    /// Province or city.
    pub level: RegionLevel,
}

const fn p(code: u32, name_zh: &'static str, name_en: &'static str) -> RegionInfo {
    RegionInfo {
        code,
        name_zh,
        name_en,
        province: code,
        level: RegionLevel::Province,
    }
}

const fn c(code: u32, name_zh: &'static str, name_en: &'static str) -> RegionInfo {
    RegionInfo {
        code,
        name_zh,
        name_en,
        province: code / 10000 * 10000,
        level: RegionLevel::City,
    }
}

/// The four provinces first, then the 41 cities (Shanghai, 13 in Jiangsu, 11 in Zhejiang,
/// 16 in Anhui). Shanghai is a municipality, so its city row shares the province's code and is
/// found as the province; [`CITIES`] lists it separately so simulations can place 41 city nodes.
pub const PROVINCES: [RegionInfo; 4] = [
    p(310000, "上海市", "Shanghai"),
    p(320000, "江苏省", "Jiangsu"),
    p(330000, "浙江省", "Zhejiang"),
    p(340000, "安徽省", "Anhui"),
];

/// The 41 prefecture-level cities of the Delta.
pub const CITIES: [RegionInfo; 41] = [
    c(310000, "上海市", "Shanghai"),
    c(320100, "南京市", "Nanjing"),
    c(320200, "无锡市", "Wuxi"),
    c(320300, "徐州市", "Xuzhou"),
    c(320400, "常州市", "Changzhou"),
    c(320500, "苏州市", "Suzhou"),
    c(320600, "南通市", "Nantong"),
    c(320700, "连云港市", "Lianyungang"),
    c(320800, "淮安市", "Huai'an"),
    c(320900, "盐城市", "Yancheng"),
    c(321000, "扬州市", "Yangzhou"),
    c(321100, "镇江市", "Zhenjiang"),
    c(321200, "泰州市", "Taizhou (Jiangsu)"),
    c(321300, "宿迁市", "Suqian"),
    c(330100, "杭州市", "Hangzhou"),
    c(330200, "宁波市", "Ningbo"),
    c(330300, "温州市", "Wenzhou"),
    c(330400, "嘉兴市", "Jiaxing"),
    c(330500, "湖州市", "Huzhou"),
    c(330600, "绍兴市", "Shaoxing"),
    c(330700, "金华市", "Jinhua"),
    c(330800, "衢州市", "Quzhou"),
    c(330900, "舟山市", "Zhoushan"),
    c(331000, "台州市", "Taizhou (Zhejiang)"),
    c(331100, "丽水市", "Lishui"),
    c(340100, "合肥市", "Hefei"),
    c(340200, "芜湖市", "Wuhu"),
    c(340300, "蚌埠市", "Bengbu"),
    c(340400, "淮南市", "Huainan"),
    c(340500, "马鞍山市", "Ma'anshan"),
    c(340600, "淮北市", "Huaibei"),
    c(340700, "铜陵市", "Tongling"),
    c(340800, "安庆市", "Anqing"),
    c(341000, "黄山市", "Huangshan"),
    c(341100, "滁州市", "Chuzhou"),
    c(341200, "阜阳市", "Fuyang"),
    c(341300, "宿州市", "Suzhou (Anhui)"),
    c(341500, "六安市", "Lu'an"),
    c(341600, "亳州市", "Bozhou"),
    c(341700, "池州市", "Chizhou"),
    c(341800, "宣城市", "Xuancheng"),
];

/// A region code that is known to be in the table. Serialises as the six-digit string.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Region(u32);

/// Why a region code was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown region code {0:?}: expected a six-digit GB/T 2260 code of the Yangtze River Delta \
     (310000 Shanghai, 320000 Jiangsu, 330000 Zhejiang, 340000 Anhui, or one of their 41 cities; \
     `yrd regions` lists them)"
)]
pub struct UnknownRegion(pub String);

impl Region {
    /// Looks a code up in the table.
    pub fn from_code(code: u32) -> Result<Self, UnknownRegion> {
        if lookup(code).is_some() {
            Ok(Region(code))
        } else {
            Err(UnknownRegion(code.to_string()))
        }
    }

    /// The six-digit code.
    pub fn code(self) -> u32 {
        self.0
    }

    /// The table row (always present: a `Region` is only built from a known code).
    pub fn info(self) -> RegionInfo {
        lookup(self.0).unwrap_or(PROVINCES[0])
    }

    /// Chinese name.
    pub fn name_zh(self) -> &'static str {
        self.info().name_zh
    }

    /// English name.
    pub fn name_en(self) -> &'static str {
        self.info().name_en
    }

    /// The province this region belongs to.
    pub fn province(self) -> Region {
        Region(self.0 / 10000 * 10000)
    }

    /// "310000 上海市 Shanghai": how every display of a peer shows its region.
    pub fn label(self) -> String {
        let info = self.info();
        format!("{} {} {}", info.code, info.name_zh, info.name_en)
    }
}

fn lookup(code: u32) -> Option<RegionInfo> {
    PROVINCES
        .iter()
        .chain(CITIES.iter())
        .find(|r| r.code == code)
        .copied()
}

/// Every region of the table, provinces first, without the duplicate Shanghai city row.
pub fn all() -> impl Iterator<Item = RegionInfo> {
    PROVINCES
        .iter()
        .chain(CITIES.iter().filter(|c| c.code != 310000))
        .copied()
}

impl std::str::FromStr for Region {
    type Err = UnknownRegion;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let trimmed = s.trim();
        if trimmed.len() != 6 || !trimmed.bytes().all(|b| b.is_ascii_digit()) {
            return Err(UnknownRegion(s.to_string()));
        }
        let code: u32 = trimmed.parse().map_err(|_| UnknownRegion(s.to_string()))?;
        Region::from_code(code).map_err(|_| UnknownRegion(s.to_string()))
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.0, self.name_zh())
    }
}

impl fmt::Debug for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Region({})", self.0)
    }
}

impl Serialize for Region {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.to_string())
    }
}

impl<'de> Deserialize<'de> for Region {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for Region {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Region".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let codes: Vec<String> = all().map(|r| r.code.to_string()).collect();
        schemars::json_schema!({
            "description": "GB/T 2260 region code of a Yangtze River Delta province or city",
            "type": "string",
            "enum": codes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_four_provinces_and_41_cities() {
        assert_eq!(PROVINCES.len(), 4);
        assert_eq!(CITIES.len(), 41);
        let per = |p: u32| CITIES.iter().filter(|c| c.province == p).count();
        assert_eq!(
            (per(310000), per(320000), per(330000), per(340000)),
            (1, 13, 11, 16)
        );
        let mut codes: Vec<u32> = all().map(|r| r.code).collect();
        let n = codes.len();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), n, "codes are unique");
        assert_eq!(n, 44);
    }

    #[test]
    fn parse_accepts_only_known_codes() {
        assert_eq!(
            "320500".parse::<Region>().map(|r| r.name_zh()),
            Ok("苏州市")
        );
        assert_eq!(
            "310000".parse::<Region>().map(|r| r.province().code()),
            Ok(310000)
        );
        for bad in ["110000", "3200", "32050O", "", "320500 ", "-320500"] {
            let trimmed_ok = bad == "320500 ";
            assert_eq!(bad.parse::<Region>().is_ok(), trimmed_ok, "{bad:?}");
        }
        let err = "110000"
            .parse::<Region>()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("110000") && err.contains("GB/T 2260"), "{err}");
    }

    #[test]
    fn serde_round_trip_is_the_code_string() -> Result<(), serde_json::Error> {
        let r: Region = serde_json::from_str("\"340100\"")?;
        assert_eq!(serde_json::to_string(&r)?, "\"340100\"");
        assert!(serde_json::from_str::<Region>("\"999999\"").is_err());
        assert_eq!(r.label(), "340100 合肥市 Hefei");
        Ok(())
    }
}
