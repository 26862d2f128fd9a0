-- Counting the visible topics of a category, or of a kind, reads only these indexes instead of
-- every topic row (home page: 6 ms of counting on 10,000 topics before this).
CREATE INDEX topics_category_visible ON topics(category_id, hidden);
CREATE INDEX topics_kind_visible ON topics(kind, hidden);
