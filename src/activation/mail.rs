//! The activation email (`[activation.smtp]`, lettre): the link, the username and how to use
//! them. Never a password or PIN: the link itself carries the account to the softphone.

use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::{SmtpConfig, SmtpSecurity};

/// What the email says.
pub struct Letter<'a> {
    pub to: &'a str,
    pub name: &'a str,
    pub username: &'a str,
    pub url: &'a str,
    pub expires: &'a str,
}

pub fn body(l: &Letter<'_>) -> String {
    format!(
        "Hello {name},\n\n\
         a softphone account is ready for you.\n\n\
         Username: {user}\n\n\
         Link: {url}\n\n\
         Open the link in a browser to see a QR code and scan it with Linphone (Assistant,\n\
         \"Fetch remote configuration\"), or enter the link there on the device itself.\n\n\
         The link works once, until {expires}. If it has expired or was used, ask for a new one.\n\
         Your password is not in this email: the link sets up the account.\n",
        name = l.name,
        user = l.username,
        url = l.url,
        expires = l.expires,
    )
}

fn transport(c: &SmtpConfig) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
    let builder = match c.security {
        SmtpSecurity::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&c.host),
        SmtpSecurity::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&c.host),
        SmtpSecurity::None => Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(
            &c.host,
        )),
    }
    .map_err(|e| format!("SMTP server {}: {e}", c.host))?;
    let mut builder = builder.port(c.port).timeout(Some(c.timeout.0));
    if let (Some(u), Some(p)) = (&c.username, &c.password) {
        builder = builder.credentials(Credentials::new(u.clone(), p.expose().to_owned()));
    }
    Ok(builder.build())
}

/// Sends the letter; the error says what failed, never with the message text.
pub async fn send(c: &SmtpConfig, l: &Letter<'_>) -> Result<(), String> {
    let from = c
        .from
        .parse()
        .map_err(|e| format!("[activation.smtp] from: {e}"))?;
    let to =
        l.to.parse()
            .map_err(|e| format!("the user's email address: {e}"))?;
    let message = Message::builder()
        .from(from)
        .to(to)
        .subject("Your softphone account")
        .header(ContentType::TEXT_PLAIN)
        .body(body(l))
        .map_err(|e| e.to_string())?;
    transport(c)?
        .send(message)
        .await
        .map(|_| ())
        .map_err(|e| format!("SMTP: {e}"))
}
