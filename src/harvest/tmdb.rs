//! TMDB v3 API shapes and URLs, and the themoviedb.org listing-page parser.

use serde::Deserialize;

/// Default API base.
pub const DEFAULT_API_URL: &str = "https://api.themoviedb.org";
/// Default image CDN base (sizes and file names follow it).
pub const DEFAULT_IMAGE_URL: &str = "https://image.tmdb.org/t/p";
/// Default website base.
pub const DEFAULT_SITE_URL: &str = "https://www.themoviedb.org";
/// TMDB never serves a discover page beyond this.
pub const MAX_PAGE: u32 = 500;
/// Results per discover page.
pub const PAGE_SIZE: u32 = 20;

/// How requests authenticate.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    /// v3 key, sent as the `api_key` query parameter.
    ApiKey(String),
    /// v4 read access token, sent as `Authorization: Bearer`.
    Bearer(String),
    /// No key: the website is scraped instead.
    None,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.write_str(match self {
            Self::ApiKey(_) => "ApiKey(***)",
            Self::Bearer(_) => "Bearer(***)",
            Self::None => "None",
        })
    }
}

/// One movie of a discover page (extra fields are ignored).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct DiscoverMovie {
    /// TMDB id.
    pub id: i64,
    /// Title.
    #[serde(default)]
    pub title: String,
    /// `YYYY-MM-DD`, sometimes empty.
    #[serde(default)]
    pub release_date: Option<String>,
    /// `/abc.jpg`, or null.
    #[serde(default)]
    pub poster_path: Option<String>,
    /// Genre ids.
    #[serde(default)]
    pub genre_ids: Vec<i64>,
    /// Popularity.
    #[serde(default)]
    pub popularity: Option<f64>,
    /// Mean vote.
    #[serde(default)]
    pub vote_average: Option<f64>,
    /// Votes.
    #[serde(default)]
    pub vote_count: Option<i64>,
}

/// A discover page.
#[derive(Debug, Clone, Deserialize)]
pub struct DiscoverPage {
    /// Page number.
    pub page: u32,
    /// Movies.
    pub results: Vec<DiscoverMovie>,
    /// Pages available (TMDB serves at most 500).
    pub total_pages: u32,
    /// Movies available.
    #[serde(default)]
    pub total_results: u64,
}

/// `/3/genre/movie/list`.
#[derive(Debug, Clone, Deserialize)]
pub struct GenreList {
    /// (id, name) pairs.
    pub genres: Vec<Genre>,
}

/// A genre.
#[derive(Debug, Clone, Deserialize)]
pub struct Genre {
    /// Id.
    pub id: i64,
    /// Name.
    pub name: String,
}

/// `/3/configuration` (only what is used).
#[derive(Debug, Clone, Deserialize)]
pub struct Configuration {
    /// Image settings.
    pub images: ImagesConfig,
}

/// Image part of the configuration.
#[derive(Debug, Clone, Deserialize)]
pub struct ImagesConfig {
    /// e.g. `https://image.tmdb.org/t/p/`.
    #[serde(default)]
    pub secure_base_url: Option<String>,
    /// e.g. `["w92","w154",…,"original"]`.
    #[serde(default)]
    pub poster_sizes: Vec<String>,
}

/// The release-date window of one discover query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DateWindow {
    /// A whole year (`primary_release_year`).
    Year(i32),
    /// An inclusive date range within a year (`primary_release_date.gte/lte`), used when a
    /// year has more than 500 pages.
    Range {
        /// Year.
        year: i32,
        /// `YYYY-MM-DD`.
        from: String,
        /// `YYYY-MM-DD`.
        to: String,
    },
}

impl DateWindow {
    /// The year of the window.
    pub fn year(&self) -> i32 {
        match self {
            Self::Year(y) | Self::Range { year: y, .. } => *y,
        }
    }

    /// Splits a year into its twelve months.
    pub fn months(year: i32) -> Vec<Self> {
        (1..=12)
            .map(|m| {
                let last = match m {
                    2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
                    2 => 28,
                    4 | 6 | 9 | 11 => 30,
                    _ => 31,
                };
                Self::Range {
                    year,
                    from: format!("{year:04}-{m:02}-01"),
                    to: format!("{year:04}-{m:02}-{last:02}"),
                }
            })
            .collect()
    }

    fn query(&self) -> String {
        match self {
            Self::Year(y) => format!("primary_release_year={y}"),
            Self::Range { from, to, .. } => {
                format!("primary_release_date.gte={from}&primary_release_date.lte={to}")
            }
        }
    }
}

/// Query parameters of a discover listing.
#[derive(Debug, Clone)]
pub struct DiscoverQuery {
    /// Date window.
    pub window: DateWindow,
    /// `revenue.desc`, `popularity.desc`, …
    pub sort_by: String,
    /// Minimum votes (`vote_count.gte`).
    pub min_votes: Option<u32>,
}

impl DiscoverQuery {
    /// A stable key for resume bookkeeping (no secrets).
    pub fn key(&self, mode: &str) -> String {
        format!(
            "{mode}:{}&sort_by={}&min_votes={}",
            self.window.query(),
            self.sort_by,
            self.min_votes.unwrap_or(0)
        )
    }

    /// `/3/discover/movie?…&page=N` under `api_url` (without the key).
    pub fn api_url(&self, api_url: &str, page: u32) -> String {
        let mut url = format!(
            "{}/3/discover/movie?{}&sort_by={}&include_adult=false&include_video=false&page={page}",
            api_url.trim_end_matches('/'),
            self.window.query(),
            self.sort_by
        );
        if let Some(v) = self.min_votes {
            url.push_str(&format!("&vote_count.gte={v}"));
        }
        url
    }

    /// The website listing `…/movie?…&page=N` under `site_url`.
    pub fn site_url(&self, site_url: &str, page: u32) -> String {
        let mut url = format!(
            "{}/movie?{}&sort_by={}&page={page}",
            site_url.trim_end_matches('/'),
            self.window.query(),
            self.sort_by
        );
        if let Some(v) = self.min_votes {
            url.push_str(&format!("&vote_count.gte={v}"));
        }
        url
    }
}

/// The year of a `YYYY-MM-DD` date.
pub fn year_of_date(date: &str) -> Option<i32> {
    let y: i32 = date.get(..4)?.parse().ok()?;
    (1870..=2100).contains(&y).then_some(y)
}

/// A movie card parsed from a themoviedb.org listing page.
#[derive(Debug, Clone, PartialEq)]
pub struct SiteMovie {
    /// TMDB id from the `/movie/<id>-slug` link.
    pub id: i64,
    /// Title.
    pub title: String,
    /// Year from the card's date, when it parses.
    pub year: Option<i32>,
    /// `/abc.jpg` from the poster's `src`/`srcset`.
    pub poster_path: Option<String>,
}

/// Most cards read from one website listing page.
pub const MAX_CARDS: usize = 100;

/// Most tags of a listing page given to the HTML parser. A real page has a few thousand;
/// the parser's cost grows with the square of deeply nested unclosed elements, so a
/// hostile page is cut here (its first cards still parse).
pub const MAX_TAGS: usize = 6_000;

/// `html` up to its [`MAX_TAGS`]-th tag.
fn bounded_html(html: &str) -> &str {
    match html.match_indices('<').nth(MAX_TAGS) {
        Some((cut, _)) => &html[..cut],
        None => html,
    }
}

/// Parses the movie cards of a listing page, tolerating layout variations: cards are
/// `div.card.style_1` (falling back to any element holding a `/movie/<id>` link and a
/// poster image). Returns an empty list for a page with no cards; reads at most
/// [`MAX_CARDS`].
pub fn parse_listing_html(html: &str) -> Vec<SiteMovie> {
    use scraper::{Html, Selector};
    fn sel(s: &str) -> Option<Selector> {
        Selector::parse(s).ok()
    }
    let doc = Html::parse_document(bounded_html(html));
    let (Some(card_sel), Some(link_sel), Some(img_sel), Some(title_sel), Some(date_sel)) = (
        sel("div.card.style_1, div.card.v4, div.card"),
        sel(r#"a[href^="/movie/"]"#),
        sel("img.poster, img"),
        sel("h2 a, h2, a[title]"),
        sel("div.content p, span.release_date, p.release_date"),
    ) else {
        return Vec::new();
    };
    let mut out: Vec<SiteMovie> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    // A real page has about 20 cards. Stopping at MAX_CARDS keeps a hostile page (tens of
    // thousands of nested, unclosed cards, whose subtree searches would be quadratic)
    // bounded; the body itself is capped at `fetch::MAX_PAGE_BODY`.
    for card in doc.select(&card_sel).take(MAX_CARDS) {
        let Some(link) = card.select(&link_sel).next() else {
            continue;
        };
        let Some(id) = link.value().attr("href").and_then(movie_id_from_href) else {
            continue;
        };
        if !seen.insert(id) {
            continue;
        }
        let img = card.select(&img_sel).next();
        let poster_path = img.and_then(|img| {
            ["src", "data-src", "srcset", "data-srcset"]
                .iter()
                .filter_map(|a| img.value().attr(a))
                .find_map(poster_path_from_src)
        });
        let title = card
            .select(&title_sel)
            .next()
            .map(|t| {
                t.value()
                    .attr("title")
                    .map_or_else(|| t.text().collect::<String>(), str::to_owned)
            })
            .or_else(|| img.and_then(|i| i.value().attr("alt")).map(str::to_owned))
            .unwrap_or_default()
            .trim()
            .to_owned();
        let year = card
            .select(&date_sel)
            .next()
            .and_then(|d| year_in_text(&d.text().collect::<String>()));
        out.push(SiteMovie {
            id,
            title,
            year,
            poster_path,
        });
    }
    out
}

fn movie_id_from_href(href: &str) -> Option<i64> {
    let rest = href.strip_prefix("/movie/")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Extracts `/<file>` from a `…/t/p/<size>/<file>` URL or srcset.
pub fn poster_path_from_src(src: &str) -> Option<String> {
    let first = src.split([',', ' ']).find(|s| s.contains("/t/p/"))?;
    let after = &first[first.find("/t/p/")? + "/t/p/".len()..];
    let (_, file) = after.split_once('/')?;
    let file = file.split(['?', '#']).next()?;
    (!file.is_empty() && !file.contains('/')).then(|| format!("/{file}"))
}

fn year_in_text(text: &str) -> Option<i32> {
    text.split(|c: char| !c.is_ascii_digit())
        .filter(|w| w.len() == 4)
        .filter_map(|w| w.parse::<i32>().ok())
        .find(|y| (1870..=2100).contains(y))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_listing_pages_parse_in_bounded_time() {
        // 50,000 unclosed cards, each nesting the next, without dates or titles.
        let mut html = String::from("<html><body>");
        for i in 0..50_000 {
            html.push_str(&format!(
                r#"<div class="card style_1"><a href="/movie/{i}"><img src="/p{i}.jpg">"#
            ));
        }
        // The bound is structural (cards kept, nesting cut), not a clock: timing belongs in
        // benchmarks.
        let cards = parse_listing_html(&html);
        assert!(cards.len() <= MAX_CARDS, "{}", cards.len());
        assert!(!cards.is_empty());
    }

    #[test]
    fn urls_and_keys() {
        let q = DiscoverQuery {
            window: DateWindow::Year(1977),
            sort_by: "revenue.desc".into(),
            min_votes: Some(10),
        };
        assert_eq!(
            q.api_url("http://127.0.0.1:9/", 2),
            "http://127.0.0.1:9/3/discover/movie?primary_release_year=1977&sort_by=revenue.desc&include_adult=false&include_video=false&page=2&vote_count.gte=10"
        );
        assert_eq!(
            q.key("api"),
            "api:primary_release_year=1977&sort_by=revenue.desc&min_votes=10"
        );
        let months = DateWindow::months(2000);
        assert_eq!(months.len(), 12);
        assert_eq!(
            months[1],
            DateWindow::Range {
                year: 2000,
                from: "2000-02-01".into(),
                to: "2000-02-29".into()
            }
        );
        assert_eq!(year_of_date("1999-03-31"), Some(1999));
        assert_eq!(year_of_date(""), None);
    }

    #[test]
    fn parses_real_shaped_cards_and_fallbacks() {
        let html = r#"<html><body><div class="page_wrapper">
          <div class="card style_1">
            <div class="image"><div class="wrapper">
              <a class="image" href="/movie/603-the-matrix" title="The Matrix">
                <img loading="lazy" class="poster" src="https://media.themoviedb.org/t/p/w220_and_h330_face/f89U3ADr1oiB1s9GkdPOEpXUk5H.jpg"
                     srcset="https://media.themoviedb.org/t/p/w220_and_h330_face/f89U3ADr1oiB1s9GkdPOEpXUk5H.jpg 1x, https://media.themoviedb.org/t/p/w440_and_h660_face/f89U3ADr1oiB1s9GkdPOEpXUk5H.jpg 2x" alt="The Matrix">
              </a></div></div>
            <div class="content"><h2><a href="/movie/603-the-matrix" title="The Matrix">The Matrix</a></h2><p>Mar 31, 1999</p></div>
          </div>
          <div class="card style_1"><div class="content"><h2><a href="/movie/11-star-wars">Star Wars</a></h2><p>May 25, 1977</p></div>
             <img class="poster" data-src="/t/p/w154/6FfCtAuVAW8XJjZ7eWeLibRLWTw.jpg"></div>
          <div class="card style_1"><h2><a href="/person/5">Not a movie</a></h2></div>
          <div class="card style_1"><a href="/movie/12-no-poster"><h2>No Poster</h2></a></div>
        </div></body></html>"#;
        let movies = parse_listing_html(html);
        assert_eq!(movies.len(), 3, "{movies:?}");
        assert_eq!(movies[0].id, 603);
        assert_eq!(movies[0].title, "The Matrix");
        assert_eq!(movies[0].year, Some(1999));
        assert_eq!(
            movies[0].poster_path.as_deref(),
            Some("/f89U3ADr1oiB1s9GkdPOEpXUk5H.jpg")
        );
        assert_eq!(movies[1].id, 11);
        assert_eq!(
            movies[1].poster_path.as_deref(),
            Some("/6FfCtAuVAW8XJjZ7eWeLibRLWTw.jpg")
        );
        assert_eq!(movies[2].poster_path, None);
        assert!(parse_listing_html("<html>nothing here").is_empty());
        assert!(parse_listing_html("\u{0}\u{1}garbage<<<>>>").is_empty());
    }
}
