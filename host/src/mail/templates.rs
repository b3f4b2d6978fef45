//! The mails the host sends, in Korean and English.

use super::Mail;
use crate::i18n::Lang;

/// `text` made safe to put inside HTML.
fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

struct Parts {
    subject: &'static str,
    greeting: String,
    body: &'static str,
    action: &'static str,
    expiry: &'static str,
    footer: &'static str,
}

fn render(to: &str, link: &str, p: Parts) -> Mail {
    let text = format!(
        "{greeting}\n\n{body}\n\n{link}\n\n{expiry}\n\n{footer}\n\n— Pingvas Studio\n",
        greeting = p.greeting,
        body = p.body,
        expiry = p.expiry,
        footer = p.footer,
    );
    let html = format!(
        "<!doctype html><html><body style=\"font-family:sans-serif;line-height:1.5\">\
         <p>{greeting}</p><p>{body}</p>\
         <p><a href=\"{href}\" style=\"display:inline-block;padding:10px 18px;background:#4f46e5;color:#fff;border-radius:6px;text-decoration:none\">{action}</a></p>\
         <p style=\"font-size:13px;color:#555\">{href}</p>\
         <p style=\"font-size:13px;color:#555\">{expiry}<br>{footer}</p>\
         <p>— Pingvas Studio</p></body></html>",
        greeting = escape_html(&p.greeting),
        body = escape_html(p.body),
        href = escape_html(link),
        action = escape_html(p.action),
        expiry = escape_html(p.expiry),
        footer = escape_html(p.footer),
    );
    Mail {
        to: to.to_owned(),
        subject: p.subject.to_owned(),
        text,
        html,
    }
}

/// The mail that confirms an address.
pub fn verify_email(lang: Lang, to: &str, name: &str, link: &str) -> Mail {
    let parts = match lang {
        Lang::Ko => Parts {
            subject: "[Pingvas Studio] 이메일 주소를 인증해 주세요",
            greeting: format!("{name}님, 안녕하세요."),
            body: "Pingvas Studio에 가입해 주셔서 감사합니다. 아래 링크를 눌러 이메일 주소를 인증해 주세요.",
            action: "이메일 인증하기",
            expiry: "이 링크는 24시간 동안 한 번만 사용할 수 있습니다.",
            footer: "가입하신 적이 없다면 이 메일을 무시하셔도 됩니다.",
        },
        Lang::En => Parts {
            subject: "[Pingvas Studio] Please verify your email address",
            greeting: format!("Hello {name},"),
            body: "Thanks for signing up for Pingvas Studio. Follow the link below to verify your email address.",
            action: "Verify email",
            expiry: "The link works once, within 24 hours.",
            footer: "If you did not sign up, you can ignore this mail.",
        },
    };
    render(to, link, parts)
}

/// The mail that lets a user choose a new password.
pub fn password_reset(lang: Lang, to: &str, name: &str, link: &str) -> Mail {
    let parts = match lang {
        Lang::Ko => Parts {
            subject: "[Pingvas Studio] 비밀번호 재설정",
            greeting: format!("{name}님, 안녕하세요."),
            body: "비밀번호 재설정 요청을 받았습니다. 아래 링크에서 새 비밀번호를 설정해 주세요. 재설정하면 모든 기기에서 로그아웃됩니다.",
            action: "비밀번호 재설정",
            expiry: "이 링크는 1시간 동안 한 번만 사용할 수 있습니다.",
            footer: "요청하신 적이 없다면 이 메일을 무시하셔도 됩니다. 비밀번호는 바뀌지 않습니다.",
        },
        Lang::En => Parts {
            subject: "[Pingvas Studio] Reset your password",
            greeting: format!("Hello {name},"),
            body: "We received a request to reset your password. Choose a new one at the link below; resetting signs you out on every device.",
            action: "Reset password",
            expiry: "The link works once, within 1 hour.",
            footer: "If you did not ask for this, ignore this mail: your password stays as it is.",
        },
    };
    render(to, link, parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_escaped_in_html_and_links_are_in_both_parts() {
        let link = "https://studio.example/verify-email?token=abc";
        let m = verify_email(Lang::En, "a@example.com", "<b>Eve</b>", link);
        assert!(m.html.contains("&lt;b&gt;Eve&lt;/b&gt;"));
        assert!(!m.html.contains("<b>Eve"));
        assert!(m.text.contains(link) && m.html.contains(link));
        let ko = password_reset(Lang::Ko, "a@example.com", "홍길동", link);
        assert!(ko.subject.contains("비밀번호"));
        assert!(ko.text.starts_with("홍길동님"));
    }
}
