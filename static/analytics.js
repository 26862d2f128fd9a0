// Covenant's analytics tag (a placeholder until the visitor-statistics collector lands).
// The server writes this script into a page only when analytics is granted for the request,
// so it marks that it ran with a first-party cookie and sends nothing anywhere.
document.cookie = "covenant_analytics=1; Path=/; Max-Age=2592000; SameSite=Lax";
