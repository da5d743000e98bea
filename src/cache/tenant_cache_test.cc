#include "cache/tenant_cache.h"

#include <gtest/gtest.h>

#include <string>

namespace silo::cache {
namespace {

const Namespace<std::string> kWords{"words"};
const Namespace<std::string> kOtherWords{"words"};  // same name, another use
const Namespace<int> kNumbers{"numbers"};

std::shared_ptr<const std::string> Text(std::string s) {
  return std::make_shared<const std::string>(std::move(s));
}

TEST(TenantCacheTest, KeepsWhatWasPutUnderItsNamespaceAndKey) {
  TenantCache c;
  EXPECT_EQ(c.Get(kWords, "k"), nullptr);
  c.Put(kWords, "k", c.generation(), Text("v"), 1);
  ASSERT_NE(c.Get(kWords, "k"), nullptr);
  EXPECT_EQ(*c.Get(kWords, "k"), "v");
  // Namespaces are told apart by identity, not by name or key.
  EXPECT_EQ(c.Get(kOtherWords, "k"), nullptr);
  EXPECT_EQ(c.Get(kNumbers, "k"), nullptr);
  c.Put(kNumbers, "k", c.generation(), std::make_shared<const int>(7), 1);
  EXPECT_EQ(*c.Get(kNumbers, "k"), 7);
  EXPECT_EQ(*c.Get(kWords, "k"), "v");
  EXPECT_EQ(c.stats().entries, 2u);
}

TEST(TenantCacheTest, TwoTenantsWithTheSameKeysReadOnlyTheirOwn) {
  TenantCache a, b;
  a.Put(kWords, "role:editor", a.generation(), Text("a's editor"), 1);
  EXPECT_EQ(b.Get(kWords, "role:editor"), nullptr);
  b.Put(kWords, "role:editor", b.generation(), Text("b's editor"), 1);
  EXPECT_EQ(*a.Get(kWords, "role:editor"), "a's editor");
  EXPECT_EQ(*b.Get(kWords, "role:editor"), "b's editor");
  b.Invalidate();
  EXPECT_EQ(*a.Get(kWords, "role:editor"), "a's editor");  // b's write is not a's
}

TEST(TenantCacheTest, InvalidateDropsEverythingAndAdvancesTheGeneration) {
  TenantCache c;
  const uint64_t g = c.generation();
  c.Put(kWords, "k", g, Text("v"), 1);
  c.Invalidate();
  EXPECT_GT(c.generation(), g);
  EXPECT_EQ(c.Get(kWords, "k"), nullptr);
  EXPECT_EQ(c.stats().entries, 0u);
  EXPECT_EQ(c.stats().bytes, 0u);
}

// The race a cache of derived values must not lose: a value read from the
// database before a write, put after the write committed, would be served
// stale until the next write. Put refuses it.
TEST(TenantCacheTest, AValueDerivedBeforeAWriteIsNeverKept) {
  TenantCache c;
  const uint64_t read_at = c.generation();  // a reader starts
  c.Invalidate();                           // a writer commits meanwhile
  c.Put(kWords, "role:editor", read_at, Text("old grants"), 1);
  EXPECT_EQ(c.Get(kWords, "role:editor"), nullptr);
  c.Put(kWords, "role:editor", c.generation(), Text("new grants"), 1);
  EXPECT_EQ(*c.Get(kWords, "role:editor"), "new grants");
}

TEST(TenantCacheTest, StaysWithinItsBudgetDroppingTheLeastRecentlyUsed) {
  TenantCache c({.max_bytes = 4096, .max_value_bytes = 1024});
  for (int i = 0; i < 100; ++i) {
    c.Put(kWords, std::to_string(i), c.generation(), Text("x"), 500);
    ASSERT_NE(c.Get(kWords, "0"), nullptr) << i;  // kept warm
  }
  const CacheStats s = c.stats();
  EXPECT_LE(s.bytes, 4096u);
  EXPECT_GT(s.evictions, 0u);
  EXPECT_NE(c.Get(kWords, "0"), nullptr);   // used the most: still there
  EXPECT_NE(c.Get(kWords, "99"), nullptr);  // the newest: still there
  EXPECT_EQ(c.Get(kWords, "1"), nullptr);   // the coldest: gone
}

TEST(TenantCacheTest, AValueOverTheLimitIsNotKept) {
  TenantCache c({.max_bytes = 1 << 20, .max_value_bytes = 1024});
  c.Put(kWords, "big", c.generation(), Text("x"), 2048);
  EXPECT_EQ(c.Get(kWords, "big"), nullptr);
  c.Put(kWords, "k", c.generation(), Text("v"), 10);
  c.Put(kWords, "k", c.generation(), Text("w"), 10);  // replaces
  EXPECT_EQ(*c.Get(kWords, "k"), "w");
  EXPECT_EQ(c.stats().entries, 1u);
}

}  // namespace
}  // namespace silo::cache
