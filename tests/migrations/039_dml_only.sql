-- Data only: no lock or statement timeout needed.
UPDATE accounts SET plan = 'free' WHERE plan IS NULL;
INSERT INTO accounts (email, plan) VALUES ('a@example.com', 'pro');
DELETE FROM accounts WHERE email LIKE '%@test.invalid';
