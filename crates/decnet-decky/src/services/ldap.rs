//! LDAP honeypot: an Active Directory domain controller of the persona's
//! domain, as a scanner or `ldapsearch` sees it before it has credentials.
//!
//! - The rootDSE (base `""`, scope base) is answered to anyone, with the
//!   attributes a Windows Server 2019 DC publishes (naming contexts from
//!   the persona's domain, `dnsHostName`, `serverName`, `dsServiceName` in
//!   `Default-First-Site-Name`, the supported LDAP versions, SASL
//!   mechanisms, controls and capabilities, functional levels 7,
//!   `currentTime`); a search naming attributes gets only those.
//! - Simple bind: an empty DN and password is the anonymous bind
//!   (success); a DN with a password is recorded as a credential and
//!   refused with AD's `invalidCredentials` text (`data 52e`). SASL binds
//!   are recorded with their mechanism and refused with
//!   `authMethodNotSupported` (a simplification: AD runs GSSAPI and
//!   GSS-SPNEGO exchanges; what they would reveal is Kerberos or NTLM,
//!   which the smb and rdp deckies capture).
//! - Any other search without a successful bind: `operationsError` with
//!   AD's "a successful bind must be completed" text. Every search is
//!   recorded as a command (base, scope, filter, attributes).
//! - Unbind ends the session; StartTLS and other extended operations are
//!   refused (`unavailable`), abandon is ignored.
//!
//! Messages are BER ([`super::ber`]); constructed elements are written
//! with 4-byte lengths as AD writes them (nmap's fingerprint relies on
//! it). A message is at most [`MAX_MESSAGE`] bytes, checked before it is
//! read; a malformed one ends the session, as AD drops a client that
//! sends garbage.

use tokio::net::TcpStream;

use super::ber::{self, BerError, Reader};
use super::wire::Wire;
use crate::event::{self, SharedSession};
use crate::io::{printable, End, Metered};
use crate::Persona;

/// Largest LDAP message read.
pub const MAX_MESSAGE: usize = 64 * 1024;
/// Nesting depth of a search filter that is still rendered.
const MAX_FILTER_DEPTH: usize = 16;
/// Attributes of one search that are recorded and matched.
const MAX_ATTRIBUTES: usize = 64;
/// Longest rendered filter or DN kept.
const MAX_TEXT: usize = 512;
/// Requests per session.
const MAX_REQUESTS: usize = 512;

/// AD's answer to a wrong password (Windows Server 2019's build tag).
pub const INVALID_CREDENTIALS: &str =
    "80090308: LdapErr: DSID-0C090569, comment: AcceptSecurityContext error, data 52e, v4563\0";
/// AD's answer to a search before a bind.
pub const BIND_REQUIRED: &str = "000004DC: LdapErr: DSID-0C090A5C, comment: In order to perform this operation a successful bind must be completed on the connection., data 0, v4563\0";

/// The `ldap` entry of [`super::REGISTRY`].
pub struct Ldap;

impl super::Protocol for Ldap {
    fn name(&self) -> &'static str {
        "ldap"
    }
    fn default_port(&self) -> u16 {
        389
    }
    fn serve(&self, session: SharedSession, io: Metered<TcpStream>) -> super::ServeFuture {
        Box::pin(serve(session, io))
    }
}

/// One request, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    SimpleBind {
        id: i64,
        dn: String,
        password: Vec<u8>,
    },
    SaslBind {
        id: i64,
        dn: String,
        mechanism: String,
    },
    Search {
        id: i64,
        base: String,
        scope: i64,
        filter: String,
        attributes: Vec<String>,
    },
    Unbind,
    Abandon,
    Extended {
        id: i64,
        name: String,
    },
    /// A write or compare (modify, add, delete, modify DN, compare): the
    /// operation's name and the tag of its response.
    Other {
        id: i64,
        operation: &'static str,
        response: u8,
    },
}

/// A DN or attribute as text: printable, bounded.
fn text(bytes: &[u8]) -> String {
    printable(&bytes[..bytes.len().min(MAX_TEXT)])
}

/// Parse one LDAPMessage (the contents of its outer SEQUENCE).
pub fn parse(message: &[u8]) -> Result<Request, BerError> {
    let mut m = Reader::new(message);
    let id = m.integer(0x02)?;
    let (tag, op) = m.element()?;
    let mut r = Reader::new(op);
    Ok(match tag {
        0x60 => {
            let _version = r.integer(0x02)?;
            let dn = text(r.expect(0x04)?);
            match r.element()? {
                (0x80, password) => {
                    Request::SimpleBind { id, dn, password: password[..password.len().min(MAX_TEXT)].to_vec() }
                }
                (0xa3, sasl) => Request::SaslBind { id, dn, mechanism: text(Reader::new(sasl).expect(0x04)?) },
                (t, _) => return Err(BerError::Tag(t)),
            }
        }
        0x63 => {
            let base = text(r.expect(0x04)?);
            let scope = r.integer(0x0a)?;
            let _deref = r.integer(0x0a)?;
            let _size = r.integer(0x02)?;
            let _time = r.integer(0x02)?;
            let _types_only = r.expect(0x01)?;
            let (ftag, fbody) = r.element()?;
            let filter = render_filter(ftag, fbody, 0)?;
            let mut attributes = Vec::new();
            let mut list = Reader::new(r.expect(0x30)?);
            while !list.is_empty() && attributes.len() < MAX_ATTRIBUTES {
                attributes.push(text(list.expect(0x04)?));
            }
            Request::Search { id, base, scope, filter: filter.chars().take(MAX_TEXT).collect(), attributes }
        }
        0x42 => Request::Unbind,
        0x50 => Request::Abandon,
        0x77 => Request::Extended { id, name: r.optional(0x80)?.map(text).unwrap_or_default() },
        0x66 => Request::Other { id, operation: "modify", response: 0x67 },
        0x68 => Request::Other { id, operation: "add", response: 0x69 },
        0x4a => Request::Other { id, operation: "delete", response: 0x6b },
        0x6c => Request::Other { id, operation: "modifyDN", response: 0x6d },
        0x6e => Request::Other { id, operation: "compare", response: 0x6f },
        t => return Err(BerError::Tag(t)),
    })
}

/// A filter as RFC 4515 text.
pub fn render_filter(tag: u8, body: &[u8], depth: usize) -> Result<String, BerError> {
    if depth > MAX_FILTER_DEPTH {
        return Err(BerError::Depth);
    }
    let escape = |b: &[u8]| -> String {
        b.iter()
            .take(MAX_TEXT)
            .map(|c| match c {
                b'*' | b'(' | b')' | b'\\' | 0 => format!("\\{c:02x}"),
                c if c.is_ascii_graphic() || *c == b' ' => (*c as char).to_string(),
                c => format!("\\{c:02x}"),
            })
            .collect()
    };
    let pair = |body: &[u8], op: &str| -> Result<String, BerError> {
        let mut r = Reader::new(body);
        let attr = escape(r.expect(0x04)?);
        let value = escape(r.expect(0x04)?);
        Ok(format!("({attr}{op}{value})"))
    };
    Ok(match tag {
        0xa0..=0xa2 => {
            let mut r = Reader::new(body);
            let mut parts = String::new();
            while !r.is_empty() && parts.len() < MAX_TEXT {
                let (t, b) = r.element()?;
                parts.push_str(&render_filter(t, b, depth + 1)?);
            }
            let op = ["&", "|", "!"][(tag - 0xa0) as usize];
            format!("({op}{parts})")
        }
        0xa3 => pair(body, "=")?,
        0xa5 => pair(body, ">=")?,
        0xa6 => pair(body, "<=")?,
        0xa8 => pair(body, "~=")?,
        0x87 => format!("({}=*)", escape(body)),
        0xa4 => {
            let mut r = Reader::new(body);
            let attr = escape(r.expect(0x04)?);
            let mut subs = Reader::new(r.expect(0x30)?);
            let (mut initial, mut any, mut last) = (String::new(), Vec::new(), String::new());
            while !subs.is_empty() {
                match subs.element()? {
                    (0x80, v) => initial = escape(v),
                    (0x81, v) => any.push(escape(v)),
                    (0x82, v) => last = escape(v),
                    (t, _) => return Err(BerError::Tag(t)),
                }
            }
            let middle: String = any.iter().map(|a| format!("{a}*")).collect();
            format!("({attr}={initial}*{middle}{last})")
        }
        0xa9 => {
            let mut r = Reader::new(body);
            let rule = r.optional(0x81)?.map(escape);
            let attr = r.optional(0x82)?.map(escape).unwrap_or_default();
            let value = escape(r.expect(0x83)?);
            let dn = if r.optional(0x84)?.is_some_and(|b| b.first() == Some(&0xff)) { ":dn" } else { "" };
            let rule = rule.map(|x| format!(":{x}")).unwrap_or_default();
            format!("({attr}{dn}{rule}:={value})")
        }
        t => return Err(BerError::Tag(t)),
    })
}

/// `corp.internal` → `DC=corp,DC=internal`.
pub fn naming_context(domain: &str) -> String {
    domain.split('.').filter(|l| !l.is_empty()).map(|l| format!("DC={l}")).collect::<Vec<_>>().join(",")
}

/// The rootDSE of the persona as a domain controller, attribute by
/// attribute in the order AD returns them.
pub fn root_dse(persona: &Persona, now: time::OffsetDateTime) -> Vec<(&'static str, Vec<String>)> {
    let dc = naming_context(&persona.domain);
    let host = persona.hostname.to_ascii_uppercase();
    let config = format!("CN=Configuration,{dc}");
    let server = format!("CN={host},CN=Servers,CN=Default-First-Site-Name,CN=Sites,{config}");
    let time = format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}.0Z",
        now.year(),
        now.month() as u8,
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    );
    let usn = 12_000 + (persona.boot_time.rem_euclid(90_000)) as u64;
    let v = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    vec![
        ("currentTime", vec![time]),
        ("subschemaSubentry", vec![format!("CN=Aggregate,CN=Schema,{config}")]),
        ("dsServiceName", vec![format!("CN=NTDS Settings,{server}")]),
        (
            "namingContexts",
            vec![
                dc.clone(),
                config.clone(),
                format!("CN=Schema,{config}"),
                format!("DC=DomainDnsZones,{dc}"),
                format!("DC=ForestDnsZones,{dc}"),
            ],
        ),
        ("defaultNamingContext", vec![dc.clone()]),
        ("rootDomainNamingContext", vec![dc.clone()]),
        ("configurationNamingContext", vec![config.clone()]),
        ("schemaNamingContext", vec![format!("CN=Schema,{config}")]),
        (
            "supportedControl",
            v(&[
                "1.2.840.113556.1.4.319",
                "1.2.840.113556.1.4.801",
                "1.2.840.113556.1.4.473",
                "1.2.840.113556.1.4.528",
                "1.2.840.113556.1.4.417",
                "1.2.840.113556.1.4.619",
                "1.2.840.113556.1.4.841",
                "1.2.840.113556.1.4.529",
                "1.2.840.113556.1.4.805",
                "1.2.840.113556.1.4.521",
                "1.2.840.113556.1.4.970",
                "1.2.840.113556.1.4.1338",
                "1.2.840.113556.1.4.474",
                "1.2.840.113556.1.4.1339",
                "1.2.840.113556.1.4.1340",
                "1.2.840.113556.1.4.1413",
                "2.16.840.1.113730.3.4.9",
                "2.16.840.1.113730.3.4.10",
                "1.2.840.113556.1.4.1504",
                "1.2.840.113556.1.4.1852",
                "1.2.840.113556.1.4.802",
                "1.2.840.113556.1.4.1907",
                "1.2.840.113556.1.4.1948",
                "1.2.840.113556.1.4.1974",
                "1.2.840.113556.1.4.1341",
                "1.2.840.113556.1.4.2026",
                "1.2.840.113556.1.4.2064",
                "1.2.840.113556.1.4.2065",
                "1.2.840.113556.1.4.2066",
                "1.2.840.113556.1.4.2090",
                "1.2.840.113556.1.4.2205",
                "1.2.840.113556.1.4.2204",
                "1.2.840.113556.1.4.2206",
                "1.2.840.113556.1.4.2211",
                "1.2.840.113556.1.4.2239",
                "1.2.840.113556.1.4.2255",
                "1.2.840.113556.1.4.2256",
                "1.2.840.113556.1.4.2309",
            ]),
        ),
        ("supportedLDAPVersion", v(&["3", "2"])),
        (
            "supportedLDAPPolicies",
            v(&[
                "MaxPoolThreads",
                "MaxPercentDirSyncRequests",
                "MaxDatagramRecv",
                "MaxReceiveBuffer",
                "InitRecvTimeout",
                "MaxConnections",
                "MaxConnIdleTime",
                "MaxPageSize",
                "MaxBatchReturnMessages",
                "MaxQueryDuration",
                "MaxDirSyncDuration",
                "MaxTempTableSize",
                "MaxResultSetSize",
                "MinResultSets",
                "MaxResultSetsPerConn",
                "MaxNotificationPerConn",
                "MaxValRange",
                "MaxValRangeTransitive",
                "ThreadMemoryLimit",
                "SystemMemoryLimitPercent",
            ]),
        ),
        ("highestCommittedUSN", vec![usn.to_string()]),
        ("supportedSASLMechanisms", v(&["GSSAPI", "GSS-SPNEGO", "EXTERNAL", "DIGEST-MD5"])),
        ("dnsHostName", vec![persona.fqdn()]),
        (
            "ldapServiceName",
            vec![format!(
                "{}:{}$@{}",
                persona.domain,
                persona.hostname.to_ascii_lowercase(),
                persona.domain.to_ascii_uppercase()
            )],
        ),
        ("serverName", vec![server]),
        (
            "supportedCapabilities",
            v(&[
                "1.2.840.113556.1.4.800",
                "1.2.840.113556.1.4.1670",
                "1.2.840.113556.1.4.1791",
                "1.2.840.113556.1.4.1935",
                "1.2.840.113556.1.4.2080",
                "1.2.840.113556.1.4.2237",
            ]),
        ),
        ("isSynchronized", v(&["TRUE"])),
        ("isGlobalCatalogReady", v(&["TRUE"])),
        ("domainFunctionality", v(&["7"])),
        ("forestFunctionality", v(&["7"])),
        ("domainControllerFunctionality", v(&["7"])),
    ]
}

/// One LDAPMessage: id, the operation (already tagged), AD's framing.
fn message(id: i64, op: Vec<u8>) -> Vec<u8> {
    let mut body = ber::tlv(0x02, &ber::integer_bytes(id));
    body.extend(op);
    ber::tlv_long(0x30, &body)
}

/// An LDAPResult operation (`tag` says which response).
fn result(tag: u8, code: u8, diagnostic: &str) -> Vec<u8> {
    let mut r = ber::tlv(0x0a, &[code]);
    r.extend(ber::tlv(0x04, b""));
    r.extend(ber::tlv(0x04, diagnostic.as_bytes()));
    ber::tlv_long(tag, &r)
}

/// The rootDSE entry, restricted to `wanted` attributes (none, `*` or
/// `+`: all).
pub fn root_dse_entry(persona: &Persona, wanted: &[String], now: time::OffsetDateTime) -> Vec<u8> {
    let all = wanted.is_empty() || wanted.iter().any(|w| w == "*" || w == "+");
    let mut attrs = Vec::new();
    for (name, values) in root_dse(persona, now) {
        if !all && !wanted.iter().any(|w| w.eq_ignore_ascii_case(name)) {
            continue;
        }
        let mut set = Vec::new();
        for v in values {
            set.extend(ber::tlv(0x04, v.as_bytes()));
        }
        let mut attr = ber::tlv(0x04, name.as_bytes());
        attr.extend(ber::tlv_long(0x31, &set));
        attrs.extend(ber::tlv_long(0x30, &attr));
    }
    let mut entry = ber::tlv(0x04, b"");
    entry.extend(ber::tlv_long(0x30, &attrs));
    ber::tlv_long(0x64, &entry)
}

pub async fn serve(session: SharedSession, io: Metered<TcpStream>) -> End {
    let (idle, persona) = event::with(&session, |s| (s.limits().idle, s.context().persona.clone()));
    let mut wire = Wire::new(io, idle);
    for _ in 0..MAX_REQUESTS {
        let bytes = match read_message(&mut wire).await {
            Ok(m) => m,
            Err(e) => return e,
        };
        let request = match parse(&bytes) {
            Ok(r) => r,
            Err(e) => {
                event::with(&session, |s| s.command(&format!("malformed request ({e})")));
                return End::Done;
            }
        };
        let reply = match request {
            Request::Unbind => {
                event::with(&session, |s| s.command("unbind"));
                return End::Done;
            }
            Request::Abandon => continue,
            Request::SimpleBind { id, dn, password } => {
                if dn.is_empty() && password.is_empty() {
                    event::with(&session, |s| s.command("bind anonymous"));
                    message(id, result(0x61, 0, ""))
                } else if password.is_empty() {
                    // An unauthenticated bind (RFC 4513 §5.1.2): AD takes it as anonymous.
                    event::with(&session, |s| s.command(&format!("bind unauthenticated {dn}")));
                    message(id, result(0x61, 0, ""))
                } else {
                    event::with(&session, |s| {
                        s.login_attempt(&dn, &password, "simple", vec![("result", "refused".to_string())])
                    });
                    message(id, result(0x61, 49, INVALID_CREDENTIALS))
                }
            }
            Request::SaslBind { id, dn, mechanism } => {
                event::with(&session, |s| s.command(&format!("bind sasl {mechanism} {dn}")));
                message(
                    id,
                    result(
                        0x61,
                        7,
                        "00002027: LdapErr: DSID-0C0905E3, comment: Unknown authentication mechanism, data 0, v4563\0",
                    ),
                )
            }
            Request::Search { id, base, scope, filter, attributes } => {
                let attrs = attributes.join(",");
                event::with(&session, |s| {
                    s.command(&format!("search base={base:?} scope={scope} filter={filter} attrs={attrs}"))
                });
                if base.is_empty() && scope == 0 {
                    let mut out = message(id, root_dse_entry(&persona, &attributes, time::OffsetDateTime::now_utc()));
                    out.extend(message(id, result(0x65, 0, "")));
                    out
                } else {
                    message(id, result(0x65, 1, BIND_REQUIRED))
                }
            }
            Request::Extended { id, name } => {
                event::with(&session, |s| s.command(&format!("extended {name}")));
                message(
                    id,
                    result(
                        0x78,
                        52,
                        "00000000: LdapErr: DSID-0C091203, comment: Error initializing SSL/TLS, data 0, v4563\0",
                    ),
                )
            }
            Request::Other { id, operation, response } => {
                event::with(&session, |s| s.command(&format!("{operation} (refused: not bound)")));
                message(id, result(response, 1, BIND_REQUIRED))
            }
        };
        if let Err(e) = wire.send(&reply).await {
            return e;
        }
    }
    End::Done
}

/// The contents of the next LDAPMessage SEQUENCE, its length checked
/// against [`MAX_MESSAGE`] before it is read.
async fn read_message(wire: &mut Wire<Metered<TcpStream>>) -> Result<Vec<u8>, End> {
    match wire.read_tlv(MAX_MESSAGE).await? {
        (0x30, contents) => Ok(contents),
        (tag, _) => Err(End::Io(format!("not an LDAP message (tag {tag:#04x})"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn search(base: &str, scope: u8, filter: Vec<u8>, attrs: &[&str]) -> Vec<u8> {
        let mut s = ber::tlv(0x04, base.as_bytes());
        s.extend(ber::tlv(0x0a, &[scope]));
        s.extend(ber::tlv(0x0a, &[0]));
        s.extend(ber::tlv(0x02, &[0]));
        s.extend(ber::tlv(0x02, &[0]));
        s.extend(ber::tlv(0x01, &[0]));
        s.extend(filter);
        let list: Vec<u8> = attrs.iter().flat_map(|a| ber::tlv(0x04, a.as_bytes())).collect();
        s.extend(ber::tlv(0x30, &list));
        let mut m = ber::tlv(0x02, &[2]);
        m.extend(ber::tlv(0x63, &s));
        m
    }

    #[test]
    fn searches_and_binds_parse_with_their_filters_rendered() {
        let present = ber::tlv(0x87, b"objectClass");
        let r = parse(&search("", 0, present, &["namingContexts"])).unwrap();
        assert_eq!(
            r,
            Request::Search {
                id: 2,
                base: "".into(),
                scope: 0,
                filter: "(objectClass=*)".into(),
                attributes: vec!["namingContexts".into()]
            }
        );
        let mut eq = ber::tlv(0x04, b"sAMAccountName");
        eq.extend(ber::tlv(0x04, b"adm*n)"));
        let mut subs = ber::tlv(0x04, b"cn");
        subs.extend(ber::tlv(0x30, &[ber::tlv(0x80, b"a"), ber::tlv(0x81, b"b"), ber::tlv(0x82, b"c")].concat()));
        let and = ber::tlv(0xa0, &[ber::tlv(0xa3, &eq), ber::tlv(0xa2, &ber::tlv(0xa4, &subs))].concat());
        let Request::Search { filter, .. } = parse(&search("DC=corp", 2, and, &[])).unwrap() else { panic!() };
        assert_eq!(filter, "(&(sAMAccountName=adm\\2an\\29)(!(cn=a*b*c)))");
        let mut bind = ber::tlv(0x02, &[3]);
        bind.extend(ber::tlv(0x04, b"CN=x,DC=corp"));
        bind.extend(ber::tlv(0x80, b"pass"));
        let mut m = ber::tlv(0x02, &[1]);
        m.extend(ber::tlv(0x60, &bind));
        assert_eq!(
            parse(&m).unwrap(),
            Request::SimpleBind { id: 1, dn: "CN=x,DC=corp".into(), password: b"pass".to_vec() }
        );
    }

    #[test]
    fn hostile_messages_are_errors_not_panics() {
        let whole = search("", 0, ber::tlv(0x87, b"objectClass"), &["a", "b"]);
        for cut in 0..whole.len() {
            assert!(parse(&whole[..cut]).is_err(), "cut at {cut}");
        }
        // A filter nested past the depth limit.
        let mut f = ber::tlv(0x87, b"x");
        for _ in 0..40 {
            f = ber::tlv(0xa2, &f);
        }
        assert_eq!(parse(&search("", 0, f, &[])), Err(BerError::Depth));
        assert_eq!(parse(&[0x02, 0x01, 0x01, 0x63, 0x84, 0xff, 0xff, 0xff, 0xff]), Err(BerError::Truncated));
        // Operations answered with their own response tag; unknown ones refused.
        assert_eq!(
            parse(&[0x02, 0x01, 0x05, 0x4a, 0x02, b'c', b'n']),
            Ok(Request::Other { id: 5, operation: "delete", response: 0x6b })
        );
        assert_eq!(parse(&[0x02, 0x01, 0x05, 0x7f, 0x00]), Err(BerError::Tag(0x7f)));
    }

    #[test]
    fn the_root_dse_is_a_dc_of_the_persona_domain_framed_as_ad_frames_it() {
        let mut p = Persona::derive("dc-01", Some("windows-server"), None, 1_764_000_000);
        p.domain = "corp.internal".into();
        let entry = root_dse_entry(&p, &[], time::OffsetDateTime::UNIX_EPOCH);
        let text = String::from_utf8_lossy(&entry);
        assert!(text.contains("DC=corp,DC=internal"));
        assert!(text.contains("CN=NTDS Settings,CN=DC-01,CN=Servers,CN=Default-First-Site-Name,CN=Sites,CN=Configuration,DC=corp,DC=internal"));
        assert!(text.contains("dc-01.corp.internal"));
        assert!(text.contains("19700101000000.0Z"));
        assert_eq!(&entry[..2], &[0x64, 0x84]);
        let only = root_dse_entry(&p, &["DNSHostName".into()], time::OffsetDateTime::UNIX_EPOCH);
        let only = String::from_utf8_lossy(&only);
        assert!(only.contains("dnsHostName") && !only.contains("namingContexts"));
        let msg = message(7, entry);
        assert_eq!(&msg[..6], &[0x30, 0x84, 0, 0, msg[4], msg[5]]);
    }
}
