// The table of contents of the product and its whole policy: every route with
// its access rule, rate rule, capture checks, enrolment gate, body limit and
// handler (routes.cc), and the rate rules themselves (below).
#ifndef SILO_API_ROUTES_H_
#define SILO_API_ROUTES_H_

#include "api/route.h"

namespace silo::api {

// Rate rules per client address, declared on routes in routes.cc.
inline constexpr RateRule kSignInPerClient{"login", RateRule::Budget::kLogin};
inline constexpr RateRule kMfaPerClient{"mfa", RateRule::Budget::kLogin};
inline constexpr RateRule kResetPerClient{"reset", RateRule::Budget::kLogin};
inline constexpr RateRule kPublicFormPerClient{"public_form", RateRule::Budget::kPublicForm};
// Link tokens are 256 random bits: the bucket bounds the load of guessing,
// not its odds, and leaves room for a page of images.
inline constexpr RateRule kFileLinkPerClient{"file_link", RateRule::Budget::kFileLink};
// Realtime upgrades: each authenticates (and may redeem a ticket).
inline constexpr RateRule kRealtimePerClient{"realtime_connect", RateRule::Budget::kRealtime};
// Every authenticated tenant call, per credential (ASVS 11.1.4): the key is
// "cred:<tenant>:<token:id | user:id>" (a user's sessions share one budget).
inline constexpr RateRule kApiPerCredential{"api", RateRule::Budget::kApi};
// Collection exports per credential, on top of it (same key; the handler
// takes it once the collection is known to exist).
inline constexpr RateRule kExportPerCredential{"export", RateRule::Budget::kExport};
// Rate rules per account. Their key is in the body (an e-mail, a pending
// sign-in), so the handler that parsed it takes them:
//   sign-in: "acct:<tenant>:<e-mail>", or "device:<tenant>:<nonce>" for a
//     browser with a valid device cookie for the account (AuthLogin);
//   second factor: "acct:<tenant>:<user>" (AuthMfa);
//   reset mail: "acct:<tenant>:<e-mail>"; over it the answer is the same and
//     no mail leaves (PasswordReset).
inline constexpr RateRule kSignInPerAccount{"login", RateRule::Budget::kLogin};
inline constexpr RateRule kMfaPerAccount{"mfa", RateRule::Budget::kLogin};
inline constexpr RateRule kResetMailPerAccount{"reset", RateRule::Budget::kResetMail};

// Platform routes on the public listener, answered for any Host.
Router BuildPlatformRouter();
// Routes under a tenant (`/t/<slug>/...` or `<slug>.<base domain>`); paths
// here are relative to the tenant root.
Router BuildTenantRouter();
// The operator listener (loopback, bearer SILO_OPERATOR_TOKEN).
Router BuildOperatorRouter();

// What api::DocumentationDefects finds in the three tables against their
// descriptions (route_docs.h); empty when they agree.
std::vector<std::string> RouteDocumentationDefects();

}  // namespace silo::api

#endif  // SILO_API_ROUTES_H_
