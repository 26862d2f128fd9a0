// Covenant's advertising tag (a placeholder: the forum sells nothing and shows no ads).
// The server writes this script into a page only when advertising is allowed for the request
// (granted, no Global Privacy Control signal, not known to be under 16), so it only marks
// that it ran with a first-party cookie and sends nothing anywhere.
document.cookie = "covenant_advertising=1; Path=/; Max-Age=2592000; SameSite=Lax";
