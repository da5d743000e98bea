#include "guard/honeypot.h"

#include <gtest/gtest.h>

namespace silo::guard {
namespace {

const HoneypotPaths kPaths({"/.env", "/wp-login.php", "/phpmyadmin/", "/.git/config"});

TEST(Honeypot, VariantsOfAPathAreTheSamePath) {
  for (const char* p :
       {"/.env", "/.ENV", "/.env/", "//.env", "/%2eenv", "/%2E%65nv", "/%252eenv", "/x/../.env",
        "/./.env", "/../../.env", "\\.env", "/.git//config", "/.GIT/Config/", "/WP-Login.php"}) {
    EXPECT_TRUE(kPaths.Matches(p)) << p;
  }
}

TEST(Honeypot, AFolderEntryCoversWhatIsUnderItAndNothingElse) {
  EXPECT_TRUE(kPaths.Matches("/phpmyadmin/"));
  EXPECT_TRUE(kPaths.Matches("/phpmyadmin"));
  EXPECT_TRUE(kPaths.Matches("/PhpMyAdmin/index.php"));
  EXPECT_FALSE(kPaths.Matches("/phpmyadminx"));
  for (const char* p : {"/", "/env", "/.envx", "/t/acme/api/", "/healthz", "/a.env", "/%zz"}) {
    EXPECT_FALSE(kPaths.Matches(p)) << p;
  }
}

TEST(Honeypot, NormalisedPaths) {
  EXPECT_EQ(NormalisePath(""), "/");
  EXPECT_EQ(NormalisePath("/a//b/./c/../d/"), "/a/b/d");
  EXPECT_EQ(NormalisePath("/%41%2fB"), "/a/b");
  EXPECT_EQ(NormalisePath("/%"), "/%");
  EXPECT_EQ(NormalisePath("/a%2"), "/a%2");
}

TEST(Honeypot, RequestsABrowserMakesForAnotherSiteAreRecognised) {
  using S = std::optional<std::string_view>;
  EXPECT_TRUE(BrowserMadeForAnotherSite(S("cross-site"), S("navigate"), S("document")));
  EXPECT_TRUE(BrowserMadeForAnotherSite(S("same-site"), S("no-cors"), S("empty")));
  EXPECT_TRUE(BrowserMadeForAnotherSite(S(), S(), S("image")));
  EXPECT_TRUE(BrowserMadeForAnotherSite(S(), S(), S("script")));
  EXPECT_TRUE(BrowserMadeForAnotherSite(S(), S(), S("style")));
  // A scanner sends none of these; a user typing the address sends "none".
  EXPECT_FALSE(BrowserMadeForAnotherSite(S(), S(), S()));
  EXPECT_FALSE(BrowserMadeForAnotherSite(S("none"), S("navigate"), S("document")));
  EXPECT_FALSE(BrowserMadeForAnotherSite(S("same-origin"), S("cors"), S("empty")));
}

}  // namespace
}  // namespace silo::guard
